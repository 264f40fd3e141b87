-- Analysis reports (report.py): one row per report asked for, its PDF once made. A pending row is what a worker
-- of any instance takes (a lease: one at a time, and taken again after a crash); the monthly one is made once
-- whatever the number of instances: the unique index lets one insert of it through.
CREATE TABLE reports (
    report_id     uuid        PRIMARY KEY,
    period_start  date        NOT NULL,
    period_end    date        NOT NULL,
    language      text        NOT NULL CHECK (language IN ('zh-CN', 'en')),
    scheduled     boolean     NOT NULL DEFAULT false,   -- the monthly report (published on stats.reports.v1)
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'generating', 'ready', 'failed')),
    attempts      int         NOT NULL DEFAULT 0,
    lease_until   timestamptz,
    error         text,                                 -- why it failed (the exception's type, nothing of data)
    pdf           bytea,
    pages         int,
    created_at    timestamptz NOT NULL DEFAULT now(),
    ready_at      timestamptz,
    CHECK (period_start <= period_end)
);
CREATE UNIQUE INDEX reports_monthly_once ON reports (period_start, period_end, language) WHERE scheduled;
CREATE INDEX reports_to_make ON reports (created_at) WHERE status IN ('pending', 'generating');

-- Supervision orders (督办: a statutory deadline gone overdue) and escalations, one row per deadline event
-- (its event_id: a redelivery adds nothing), for the reports' "supervision orders and escalations issued".
CREATE TABLE supervision_actions (
    event_id   uuid        PRIMARY KEY,
    matter_id  uuid        NOT NULL,
    state      text        NOT NULL CHECK (state IN ('overdue', 'escalated')),
    unit       text,
    office     text,
    at         timestamptz NOT NULL,
    day        date        NOT NULL                  -- the Beijing day it happened: what a period counts by
);
CREATE INDEX supervision_actions_by_day ON supervision_actions (day);
