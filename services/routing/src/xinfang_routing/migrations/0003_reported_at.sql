-- A unit's action takes effect when its feedback reached the system (history.at); the time the unit said it
-- acted is kept beside it, for the record: it never makes late work on time.
ALTER TABLE history ADD COLUMN reported_at timestamptz;
