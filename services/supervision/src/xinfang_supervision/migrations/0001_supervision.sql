-- What supervision knows of a matter: enough to address orders and list deadlines by office and unit.
-- No personal data (the registered event's petitioner is never stored here).
CREATE TABLE matters (
    matter_id      uuid        PRIMARY KEY,
    tracking_code  text,
    registered_at  timestamptz,
    office         text,
    unit           text,
    status         text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per deadline of a matter. `state` is the last state published on deadlines.events.v1 (or
-- `closed`: a window that lapsed or no longer applies, published as nothing). `stage` is how far the
-- scheduler has taken it (set → due-soon → overdue → escalated), and `next_check_at` when it must look next
-- (null when met, closed or paused). `round` counts due times: a new unit, an extension or a resume starts
-- a new one, so each warning is given once per due time.
CREATE TABLE deadlines (
    matter_id      uuid        NOT NULL,
    deadline       text        NOT NULL,
    unit           text,
    state          text        NOT NULL,
    stage          text        NOT NULL DEFAULT 'set',
    open           boolean     NOT NULL DEFAULT true,
    round          int         NOT NULL DEFAULT 1,
    started_at     timestamptz NOT NULL,
    due_at         timestamptz NOT NULL,
    warn_at        timestamptz,
    escalate_at    timestamptz,
    next_check_at  timestamptz,
    met_at         timestamptz,
    overdue_at     timestamptz,
    escalated_at   timestamptz,
    extensions     int         NOT NULL DEFAULT 0,
    extended_days  int         NOT NULL DEFAULT 0,
    paused_at      timestamptz,
    paused_total   interval    NOT NULL DEFAULT '0',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (matter_id, deadline)
);
-- The scheduler's work list: only what is still to be looked at.
CREATE INDEX deadlines_due ON deadlines (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX deadlines_open_by_stage ON deadlines (stage, due_at) WHERE open;

-- Every state a deadline went through, with the round: a warning is written (and published) at most once
-- per deadline and due time, whichever instance gets there and however often it restarts.
CREATE TABLE deadline_history (
    id         bigserial   PRIMARY KEY,
    matter_id  uuid        NOT NULL,
    deadline   text        NOT NULL,
    round      int         NOT NULL,
    state      text        NOT NULL,
    due_at     timestamptz NOT NULL,
    unit       text,
    at         timestamptz NOT NULL,
    detail     text
);
CREATE INDEX deadline_history_by_matter ON deadline_history (matter_id, id);
CREATE UNIQUE INDEX deadline_history_once ON deadline_history (matter_id, deadline, round, state)
    WHERE state IN ('due-soon', 'overdue', 'escalated');

-- The controlled clock (SUPERVISION_CLOCK=controlled): how far supervision's time is ahead of the wall
-- clock, shared by every instance and kept across restarts.
CREATE TABLE clock (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    offset_s  double precision NOT NULL DEFAULT 0
);
INSERT INTO clock DEFAULT VALUES;
