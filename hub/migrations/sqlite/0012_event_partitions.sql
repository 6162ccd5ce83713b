-- The event store becomes an append-only log cut into time partitions (by ingested_at_ms):
-- one table per partition, `events_p<start_ms>`, with its own small indexes, listed in
-- `event_partitions`; the writer creates the next one ahead and retention drops whole
-- partitions. `events` is a view (UNION ALL of the partitions) the writer rewrites whenever
-- the list changes, so readers keep one name. Duplicates are dropped against the gateway's
-- high-water mark (`gateways.last_seq`, committed with the rows), not by a primary key.
CREATE TABLE event_partitions (
    name     TEXT   NOT NULL PRIMARY KEY,
    start_ms BIGINT NOT NULL,
    end_ms   BIGINT NOT NULL,
    -- Rows stored in it (counted by the writer; what a drop purges).
    rows     BIGINT NOT NULL DEFAULT 0
);

-- The events stored before: kept as one closed partition (its old indexes stay), dropped
-- whole once its newest event is past retention (at once when it is empty).
ALTER TABLE events RENAME TO events_legacy;
INSERT INTO event_partitions (name, start_ms, end_ms, rows)
    SELECT 'events_legacy', COALESCE(MIN(ingested_at_ms), 0),
           COALESCE(MAX(ingested_at_ms) + 1, 0), COUNT(*)
    FROM events_legacy;

CREATE VIEW events AS
    SELECT gateway_id, seq, event_id, estate_id, device_id, device_kind, area,
           occurred_at_ms, received_at_ms, ingested_at_ms, body_kind, payload
    FROM events_legacy;
