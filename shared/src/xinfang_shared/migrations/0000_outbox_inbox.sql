-- The messaging tables every service gets in its own schema (applied before the service's own files).

-- Transactional outbox: written in the same transaction as the domain change; the relay publishes and
-- deletes. The topic is the durable record of what was published.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Wake the relay (LISTEN "<schema>_outbox") once per inserting statement.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Inbox: event ids already processed, inserted in the same transaction as the side effect.
CREATE TABLE inbox (
    event_id      uuid        PRIMARY KEY,
    source        text        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
