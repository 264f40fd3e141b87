-- Registered matters. Personal data is sealed (AES-256-GCM) in personal_data; petitioner_key is a keyed
-- hash of the resident ID number for matching repeats; details hold the submission without personal data.
CREATE TABLE matters (
    matter_id           uuid        PRIMARY KEY,
    tracking_code       text        NOT NULL UNIQUE,
    channel             text        NOT NULL,
    external_id         text        NOT NULL,
    content_hash        bytea       NOT NULL,
    kind                text        NOT NULL,
    petitioner_key      bytea       NOT NULL,
    personal_data       bytea       NOT NULL,
    details             jsonb       NOT NULL,
    fingerprint         int[]       NOT NULL,
    submitted_at        timestamptz NOT NULL,
    registered_at       timestamptz NOT NULL,
    duplicate_of        uuid        REFERENCES matters (matter_id),
    not_accepted_again  boolean     NOT NULL DEFAULT false,
    related_matter_id   uuid        REFERENCES matters (matter_id),
    -- What intake learns back from matters.status.v1, matters.routed.v1 and deadlines.events.v1:
    status              text        NOT NULL,
    status_at           timestamptz NOT NULL,
    concluded_at        timestamptz,
    office              text,
    unit                text,
    category            text,
    opinion             jsonb,
    rating              text,
    rated_at            timestamptz,
    UNIQUE (channel, external_id)
);

-- Repeat detection looks up a petitioner's earlier originals.
CREATE INDEX matters_by_petitioner ON matters (petitioner_key, registered_at)
    WHERE duplicate_of IS NULL AND NOT not_accepted_again;

CREATE TABLE matter_deadlines (
    matter_id  uuid        NOT NULL REFERENCES matters (matter_id),
    deadline   text        NOT NULL,
    state      text        NOT NULL,
    due_at     timestamptz NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (matter_id, deadline)
);

-- Channel systems' API keys, stored as SHA-256 of the key (keys are 256-bit random, so a slow hash adds
-- nothing but latency), each naming the channels its system may submit for.
CREATE TABLE channel_keys (
    key_hash    bytea       PRIMARY KEY,
    system      text        NOT NULL UNIQUE,
    channels    text[]      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
