-- The relay's wake-up says which buckets got rows: a relay woken by it publishes those buckets' groups without
-- first asking the outbox which groups have rows (a skip scan of the shard index that a busy outbox, full of
-- rows deleted a moment ago, made the most expensive statement of a matter). The payload is the statement's
-- distinct buckets, comma-separated; a relay of an earlier release ignores it.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', (SELECT coalesce(string_agg(DISTINCT shard::text, ','), '') FROM inserted));
    RETURN NULL;
END $$;

DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
