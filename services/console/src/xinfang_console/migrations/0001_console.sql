-- The console's own tables: the bureau's staff accounts, their sessions, and failed sign-ins (for the limits).
-- It reads no other service's tables: what it shows comes from their HTTP APIs.

CREATE TABLE staff (
    username          text        PRIMARY KEY,
    display_name      text        NOT NULL,
    role              text        NOT NULL CHECK (role IN ('clerk', 'head', 'leader')),
    office            text,                           -- NULL for a leader (the bureau's)
    password_hash     text        NOT NULL,           -- argon2id, with its parameters (PHC string)
    disabled          boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    password_set_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'leader') = (office IS NULL))
);

-- A session is known by the SHA-256 of its token (the cookie holds the token, signed): a copy of this table
-- signs nobody in.
CREATE TABLE sessions (
    token_hash   bytea       PRIMARY KEY,
    username     text        NOT NULL REFERENCES staff (username) ON DELETE CASCADE,
    csrf         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    seen_at      timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (username);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Failed sign-ins, by account and by address (kind), kept for the limit's window.
CREATE TABLE signin_failures (
    kind  text        NOT NULL CHECK (kind IN ('account', 'address')),
    key   text        NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signin_failures_by_key ON signin_failures (kind, key, at);
