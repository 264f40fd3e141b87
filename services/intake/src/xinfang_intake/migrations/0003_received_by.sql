-- Who registered the matter, when the console's key named a person of reception (staff:<user>); null for a
-- channel system's submission. Staff identity, not the petitioner's: kept in clear.
ALTER TABLE matters ADD COLUMN received_by text;
