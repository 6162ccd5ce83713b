-- The gateway's store-and-forward outbox. `seq` is the per-gateway sequence number:
-- AUTOINCREMENT never reuses a value, even after acknowledged rows are deleted, so the
-- sequence survives restarts.
CREATE TABLE outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 0: never shed (fire, security); 1: ordinary information; 2: point readings (shed first)
    class INTEGER NOT NULL,
    event BLOB    NOT NULL
);
CREATE INDEX outbox_by_class ON outbox (class, seq);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
