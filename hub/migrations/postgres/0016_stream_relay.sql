-- Several hubs on one PostgreSQL, serving operators on every hub:
-- * the writer lease row names where the active hub answers HTTP, so a standby can forward an
--   operator's change to it;
-- * the active hub writes each committed transaction's live-stream events here, in the same
--   transaction, and NOTIFYs `gatehouse_stream`; every other hub reads the rows past its last
--   id and publishes them on its own stream. Rows older than a few minutes are purged by the
--   writer. SQLite has the table too (one migration history) but never uses it.
ALTER TABLE hub_leases ADD COLUMN http_url TEXT NOT NULL DEFAULT '';
CREATE TABLE stream_outbox (
    id BIGSERIAL PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    events TEXT NOT NULL
);
