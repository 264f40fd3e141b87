-- The relay's buckets (outbox.py): every row falls, by its key, in one of 64 buckets, and a relay publishes only
-- the buckets of the lock groups it holds (bucket b belongs to group b % shards), so the rows of one key are
-- always published by one relay at a time, in id order. A row without a key is in bucket 0.
-- sha256 rather than hashtext: a digest no PostgreSQL release can change, so a row written before an upgrade
-- stays in the bucket of the rows its key gets after it. Both functions are immutable, as a generated column
-- needs.
ALTER TABLE outbox
    ADD COLUMN shard smallint NOT NULL
    GENERATED ALWAYS AS (coalesce(get_byte(sha256(key), 0) % 64, 0)::smallint) STORED;

CREATE INDEX outbox_shard_id ON outbox (shard, id);
