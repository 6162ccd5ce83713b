-- Gatehouse hub, initial schema (PostgreSQL). The same tables and columns as
-- migrations/sqlite/, numbered alike: BIGSERIAL for ids, BYTEA for blobs, BOOLEAN flags.
-- Timestamps are BIGINT milliseconds since the Unix epoch (UTC).

CREATE TABLE gateways (
    id               TEXT    NOT NULL PRIMARY KEY,
    estate_id        TEXT    NOT NULL,
    software_version TEXT    NOT NULL DEFAULT '',
    connected        BOOLEAN NOT NULL DEFAULT FALSE,
    connected_at_ms  BIGINT,
    last_seen_ms     BIGINT,
    -- Highest event sequence number durably stored for this gateway (0: none).
    last_seq         BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX gateways_estate ON gateways (estate_id);

-- Each gateway's device registry, as last announced in its Hello.
CREATE TABLE devices (
    gateway_id TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    estate_id  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    area       TEXT    NOT NULL,
    PRIMARY KEY (gateway_id, device_id)
);

CREATE TABLE events (
    gateway_id     TEXT    NOT NULL,
    seq            BIGINT  NOT NULL,
    event_id       TEXT    NOT NULL,
    estate_id      TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    device_kind    TEXT    NOT NULL,
    area           TEXT    NOT NULL,
    occurred_at_ms BIGINT  NOT NULL,
    received_at_ms BIGINT  NOT NULL,
    ingested_at_ms BIGINT  NOT NULL,
    -- access | door | vehicle | intercom | fire | point | status | none
    body_kind      TEXT    NOT NULL,
    -- The encoded protobuf gatehouse.v1.Event, as received.
    payload        BYTEA    NOT NULL,
    PRIMARY KEY (gateway_id, seq)
);

CREATE INDEX events_estate_time ON events (estate_id, occurred_at_ms);
CREATE INDEX events_device_time ON events (estate_id, device_id, occurred_at_ms);

CREATE TABLE alarms (
    id             BIGSERIAL PRIMARY KEY,
    estate_id      TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    gateway_id     TEXT    NOT NULL,
    area           TEXT    NOT NULL,
    condition      TEXT    NOT NULL,
    priority       TEXT    NOT NULL CHECK (priority IN ('P1', 'P2', 'P3', 'P4')),
    category       TEXT    NOT NULL CHECK (category IN ('fire', 'security', 'plant', 'device')),
    message        TEXT    NOT NULL,
    active         BOOLEAN NOT NULL,
    acknowledged   BOOLEAN NOT NULL,
    -- Cleared by acknowledgement (event alarms with no return-to-normal).
    latched        BOOLEAN NOT NULL,
    activations    BIGINT  NOT NULL,
    value          DOUBLE PRECISION,
    raised_at_ms   BIGINT  NOT NULL,
    changed_at_ms  BIGINT  NOT NULL,
    acked_at_ms    BIGINT,
    acked_by       TEXT,
    UNIQUE (estate_id, device_id, condition)
);

CREATE INDEX alarms_changed ON alarms (changed_at_ms);
CREATE INDEX alarms_active ON alarms (active, estate_id);

CREATE TABLE alarm_history (
    id              BIGSERIAL PRIMARY KEY,
    alarm_id        BIGINT  NOT NULL REFERENCES alarms (id),
    at_ms           BIGINT  NOT NULL,
    change          TEXT    NOT NULL CHECK (change IN ('raised', 'reraised', 'updated', 'cleared', 'acknowledged')),
    actor           TEXT,
    event_gateway_id TEXT,
    event_seq       BIGINT,
    note            TEXT
);

CREATE INDEX alarm_history_alarm ON alarm_history (alarm_id, id);

CREATE TABLE command_results (
    id          BIGSERIAL PRIMARY KEY,
    gateway_id  TEXT    NOT NULL,
    command_id  TEXT    NOT NULL,
    device_id   TEXT    NOT NULL,
    ok          BOOLEAN NOT NULL,
    message     TEXT    NOT NULL,
    received_at_ms BIGINT NOT NULL
);

CREATE INDEX command_results_command ON command_results (gateway_id, command_id);
