-- What notify knows of a matter, from matters.registered.v1: what its notices show and where its petitioner
-- is told. The petitioner's e-mail and phone are sealed (AES-256-GCM); nothing else personal is kept.
CREATE TABLE matters (
    matter_id      uuid        PRIMARY KEY,
    tracking_code  text        NOT NULL,
    language       text        NOT NULL,
    contact        bytea       NOT NULL,   -- sealed {email, phone}
    by_email       boolean     NOT NULL,   -- an e-mail address was given: notices go by e-mail, else by SMS
    headcount      int         NOT NULL,
    visit_place    text,
    visit_unusual  boolean     NOT NULL DEFAULT false,
    registered_at  timestamptz NOT NULL
);

-- One row per notice to one recipient about one thing: the unique key is "each (matter, notice, recipient)
-- once" (about: what of the matter, where one matter can have several, e.g. a deadline's due time). The row
-- and the inbox record of the event it came from commit together; sending is a later step (sender.py).
CREATE TABLE notifications (
    id               bigserial   PRIMARY KEY,
    key              uuid        NOT NULL UNIQUE,   -- from (matter, notice, recipient, about): Message-ID / OutId
    matter_id        uuid        NOT NULL,          -- the matter (for a surge: the alert)
    notice           text        NOT NULL,
    recipient_kind   text        NOT NULL,          -- petitioner | unit | office
    recipient        text        NOT NULL,          -- 'petitioner', a unit's or an office's code
    about            text        NOT NULL DEFAULT '',
    urgent           boolean     NOT NULL DEFAULT false,
    params           jsonb       NOT NULL,          -- what the template shows: never anyone's personal data
    channel          text,                          -- email | sms | topic, once decided
    address_masked   text,                          -- where it went, masked (138****5678, z***@example.org)
    status           text        NOT NULL DEFAULT 'pending', -- pending held sent failed delivered undelivered
    attempts         int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,                   -- claimed by a sender until then
    last_error       text,
    dead_lettered    boolean     NOT NULL DEFAULT false, -- failed after every retry: an operator may retry it
    provider_id      text,                          -- the SMTP server's answer or the gateway's BizId
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (matter_id, notice, recipient, about)
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status IN ('pending', 'held');
CREATE INDEX notifications_by_matter ON notifications (matter_id, id);
CREATE INDEX notifications_dead ON notifications (updated_at) WHERE dead_lettered;

-- Wake the senders when notices are planned (once per statement).
CREATE FUNCTION notifications_planned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_notifications', '');
    RETURN NULL;
END $$;
CREATE TRIGGER notifications_planned AFTER INSERT ON notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notifications_planned();
