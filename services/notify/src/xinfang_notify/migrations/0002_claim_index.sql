-- The senders' claim takes the most urgent, then the longest waiting, of the due notices (store.claim). Over
-- notifications_due it sorted every due row on each claim (10 ms at 15,000 pending, during a surge); in this
-- order it reads the first `limit` rows and stops.
CREATE INDEX notifications_claim ON notifications (urgent DESC, next_attempt_at) WHERE status IN ('pending', 'held');
