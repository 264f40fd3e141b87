-- When the current status took effect (a unit's own `at` for its feedback, within what routing can vouch for):
-- a unit's later action is never dated before it.
ALTER TABLE matters ADD COLUMN status_at timestamptz;
UPDATE matters SET status_at = updated_at;
