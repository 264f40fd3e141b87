-- Supervision never needed the petitioner's tracking code (its orders name the matter by its id), and it no
-- longer receives it (matters.registered.v2 seals it): the codes kept so far go.
ALTER TABLE matters DROP COLUMN tracking_code;
