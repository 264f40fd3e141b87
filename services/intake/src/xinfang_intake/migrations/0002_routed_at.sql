-- When the routing intake learnt was made: an older matters.routed.v1, redelivered late, changes nothing.
ALTER TABLE matters ADD COLUMN routed_at timestamptz;
