-- The event store becomes an append-only log partitioned by time (ingested_at_ms):
-- `events` is partitioned by range, the hub creates each partition ahead
-- (`events_p<start_ms>`) and retention drops whole partitions (DETACH + DROP). The parent's
-- indexes propagate to every partition. `event_partitions` lists them for the hub (the same
-- catalogue as on SQLite). Duplicates are dropped against the gateway's high-water mark
-- (`gateways.last_seq`, committed with the rows), not by a primary key.
CREATE TABLE event_partitions (
    name     TEXT   NOT NULL PRIMARY KEY,
    start_ms BIGINT NOT NULL,
    end_ms   BIGINT NOT NULL,
    -- Rows stored in it (counted by the hub; what a drop purges).
    rows     BIGINT NOT NULL DEFAULT 0
);

ALTER TABLE events RENAME TO events_legacy;
ALTER TABLE events_legacy RENAME CONSTRAINT events_pkey TO events_legacy_pkey;
ALTER INDEX events_estate_time RENAME TO events_legacy_estate_time;
ALTER INDEX events_device_time RENAME TO events_legacy_device_time;
ALTER INDEX events_ingested RENAME TO events_legacy_ingested;

CREATE TABLE events (
    gateway_id     TEXT   NOT NULL,
    seq            BIGINT NOT NULL,
    event_id       TEXT   NOT NULL,
    estate_id      TEXT   NOT NULL,
    device_id      TEXT   NOT NULL,
    device_kind    TEXT   NOT NULL,
    area           TEXT   NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    ingested_at_ms BIGINT NOT NULL,
    -- access | door | vehicle | intercom | fire | point | status | none
    body_kind      TEXT   NOT NULL,
    -- The encoded protobuf gatehouse.v1.Event, as received.
    payload        BYTEA  NOT NULL
) PARTITION BY RANGE (ingested_at_ms);

CREATE INDEX events_estate_time ON events (estate_id, occurred_at_ms);
CREATE INDEX events_device_time ON events (estate_id, device_id, occurred_at_ms);

-- The events stored before: one closed partition (its indexes match the parent's and are
-- attached, not rebuilt), dropped whole once its newest event is past retention.
DO $$
DECLARE
    lo BIGINT;
    hi BIGINT;
    n  BIGINT;
BEGIN
    SELECT MIN(ingested_at_ms), MAX(ingested_at_ms), COUNT(*) INTO lo, hi, n FROM events_legacy;
    IF n = 0 THEN
        DROP TABLE events_legacy;
    ELSE
        EXECUTE format('ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (%s) TO (%s)', lo, hi + 1);
        INSERT INTO event_partitions (name, start_ms, end_ms, rows) VALUES ('events_legacy', lo, hi + 1, n);
    END IF;
END
$$;
