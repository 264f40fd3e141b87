-- Windows (the objection window, the petitioner's windows to request a review) beside duties: a window is
-- never paused or extended and counts in no on-time figure. `closed` is now published, once per round.
ALTER TABLE deadlines ADD COLUMN is_window boolean NOT NULL DEFAULT false;
UPDATE deadlines SET is_window = true WHERE deadline = 'objection';

DROP INDEX deadline_history_once;
CREATE UNIQUE INDEX deadline_history_once ON deadline_history (matter_id, deadline, round, state)
    WHERE state IN ('due-soon', 'overdue', 'escalated', 'closed');
