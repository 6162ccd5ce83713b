-- Operators' sign-in (issue 12 §3): users, their sessions and the API tokens an admin makes.
-- Written only by the hub's writer (hub/src/auth/queries.rs), except the seeding of the
-- configured `[[users]]` at start, before the writer runs. Secrets are never stored: a
-- password is an argon2id PHC string, a session or API token only its SHA-256.
CREATE TABLE users (
    name           TEXT    PRIMARY KEY,
    -- guard | operator | supervisor | duty_manager | facility | admin
    role           TEXT    NOT NULL,
    -- JSON arrays of region and estate ids; both empty: every estate
    regions        TEXT    NOT NULL DEFAULT '[]',
    estates        TEXT    NOT NULL DEFAULT '[]',
    guard_id       TEXT,
    password_hash  TEXT    NOT NULL,
    disabled       BIGINT NOT NULL DEFAULT 0,
    -- 1: listed in the hub config's [[users]], which is the truth for it at every start
    from_config    BIGINT NOT NULL DEFAULT 0,
    created_at_ms  BIGINT  NOT NULL,
    updated_at_ms  BIGINT  NOT NULL
);

CREATE TABLE sessions (
    token_sha256   TEXT    PRIMARY KEY,
    user_name      TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at_ms  BIGINT  NOT NULL,
    expires_at_ms  BIGINT  NOT NULL,
    source         TEXT
);

CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_expiry ON sessions (expires_at_ms);

CREATE TABLE api_tokens (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    regions        TEXT    NOT NULL DEFAULT '[]',
    estates        TEXT    NOT NULL DEFAULT '[]',
    token_sha256   TEXT    NOT NULL UNIQUE,
    created_by     TEXT    NOT NULL,
    created_at_ms  BIGINT  NOT NULL,
    expires_at_ms  BIGINT,
    revoked_at_ms  BIGINT
);
