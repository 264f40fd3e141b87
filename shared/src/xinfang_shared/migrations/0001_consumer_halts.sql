-- Consumers halted by their dead-letter limit (dlq_limit.py): kept here so that every instance of the service
-- halts the consumer and a restart does not resume it. A row ends when a probe succeeds or an operator resumes.
CREATE TABLE consumer_halts (
    consumer       text        PRIMARY KEY,
    reason         text        NOT NULL,
    since          timestamptz NOT NULL,
    next_probe_at  timestamptz NOT NULL,
    probes         int         NOT NULL DEFAULT 0,
    halted_by      text        NOT NULL
);
