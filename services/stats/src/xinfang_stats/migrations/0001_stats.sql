-- One fact row per matter, folded from every event about it (fold.py). No personal data: not the petitioner,
-- not a hashed ID, not the text (only its hot terms, from which no person can be told).
CREATE TABLE facts (
    matter_id        uuid        PRIMARY KEY,
    registered_at    timestamptz,
    day              date,                    -- the Beijing day it was registered: what figures count by
    channel          text,
    kind             text,
    region           text,                    -- 4-digit city prefix of location.region_code
    headcount        int,
    group_visit      boolean,                 -- headcount >= 5 (集体访)
    repeat           text,                    -- duplicate | not-accepted-again
    office           text,
    unit             text,                    -- the unit handling it now
    category         text,
    routed_at        timestamptz,
    transferred_at   timestamptz,
    accepted_at      timestamptz,
    not_accepted_at  timestamptz,
    concluded_at     timestamptz,             -- the unit's first conclusion
    conclude_days    double precision GENERATED ALWAYS AS (extract(epoch FROM concluded_at - registered_at) / 86400)
                     STORED,                  -- time to conclude, in days (a column: the percentiles sort only it)
    status           text,
    status_at        timestamptz,
    overdue          boolean     NOT NULL DEFAULT false,   -- a statutory deadline of it went overdue
    late             boolean     NOT NULL DEFAULT false,   -- one was met after it expired
    met              int         NOT NULL DEFAULT 0,       -- obligations met
    rating           text,
    terms            text[]      NOT NULL DEFAULT '{}'
);
CREATE INDEX facts_by_day ON facts (day);
CREATE INDEX facts_by_registered ON facts (registered_at);
CREATE INDEX facts_by_unit ON facts (unit) WHERE unit IS NOT NULL;

-- Matters registered per hour, city, category and channel (repeats left out): the surge baseline.
CREATE TABLE hourly (
    hour      timestamptz NOT NULL,
    region    text        NOT NULL,              -- '' when the matter has no location
    category  text        NOT NULL,              -- 'unknown' until routing says
    channel   text        NOT NULL,
    matters   int         NOT NULL,
    PRIMARY KEY (hour, region, category, channel)
);

-- Surge alerts: one open per series (a city, or a category) at a time.
CREATE TABLE alerts (
    alert_id     uuid        PRIMARY KEY,
    series       text        NOT NULL,          -- region:5134 | category:labor
    region_code  text,
    category     text,
    state        text        NOT NULL CHECK (state IN ('open', 'closed')),
    window_      text        NOT NULL,
    observed     int         NOT NULL,
    baseline     double precision NOT NULL,
    method       text        NOT NULL,
    opened_at    timestamptz NOT NULL,
    closed_at    timestamptz
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (series) WHERE state = 'open';

-- The surge watch's event time (watch.py): per partition of matters.registered.v1, the last offset folded and
-- the latest registration among the records folded.
CREATE TABLE watermarks (
    topic          text        NOT NULL,
    partition      int         NOT NULL,
    folded_offset  bigint      NOT NULL,
    event_time     timestamptz,
    PRIMARY KEY (topic, partition)
);

-- Each series' detector state (surge.SeriesState as JSON): its open alert, calm checks, last hour checked.
CREATE TABLE surge_series (
    series     text  PRIMARY KEY,                 -- region:5134 | category:labor
    state      jsonb NOT NULL
);
