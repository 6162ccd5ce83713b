-- Several hubs on one PostgreSQL: the writer of a region database is held as a fenced lease.
-- The hub holding the row's lease (holder, expires_at_ms in the database's clock) is the
-- active one; every writer transaction first updates this row WHERE epoch and holder are its
-- own, so a hub whose lease was taken over can never commit again. SQLite has the table too
-- (one migration history for both backends) but never uses it: a file has one writer.
CREATE TABLE hub_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
