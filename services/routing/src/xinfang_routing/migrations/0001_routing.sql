-- Matters as routing sees them: no personal data in clear (personal_data is sealed, for the unit's inbox).
CREATE TABLE matters (
    matter_id            uuid        PRIMARY KEY,
    tracking_code        text        NOT NULL UNIQUE,
    kind                 text        NOT NULL,
    facts                jsonb       NOT NULL,   -- what the rules read
    details              jsonb       NOT NULL,   -- title, content, location: what a unit needs to handle it
    personal_data        bytea,
    registered_at        timestamptz NOT NULL,
    status               text        NOT NULL,
    office               text,
    unit                 text,
    category             text,
    category_inferred    boolean     NOT NULL DEFAULT false,
    category_confidence  real,
    needs_review         boolean     NOT NULL DEFAULT false,
    office_rule          text,
    unit_rule            text,
    rules_version        text,
    objected_units       text[]      NOT NULL DEFAULT '{}',
    transferred_at       timestamptz,
    review_level         int         NOT NULL DEFAULT 0,   -- 0 original, 1 review, 2 re-review
    related_matter_id    uuid,
    updated_at           timestamptz NOT NULL
);

-- Each office's manual-assignment queue.
CREATE INDEX matters_awaiting ON matters (office, registered_at) WHERE status = 'awaiting-assignment';

-- Who did what, when, by which rule, and why: the operator's view of a matter.
CREATE TABLE history (
    id           bigserial   PRIMARY KEY,
    matter_id    uuid        NOT NULL REFERENCES matters (matter_id),
    at           timestamptz NOT NULL,
    actor        text        NOT NULL,
    action       text        NOT NULL,
    from_status  text,
    to_status    text        NOT NULL,
    office       text,
    unit         text,
    rule         text,
    reason       text
);
CREATE INDEX history_by_matter ON history (matter_id, id);
