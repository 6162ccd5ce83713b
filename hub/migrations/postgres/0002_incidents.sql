-- Alarm book overlays, incidents, escalation timers, notifications, flood periods, KPI
-- tallies. Portable SQL apart from BIGSERIAL PRIMARY KEY (BIGSERIAL in the
-- PostgreSQL migration) and the alarm_history rebuild (PostgreSQL: ALTER ... DROP CONSTRAINT).

ALTER TABLE alarms ADD COLUMN shelved_until_ms BIGINT;
ALTER TABLE alarms ADD COLUMN shelved_by TEXT;
ALTER TABLE alarms ADD COLUMN shelve_reason TEXT;
-- Suppressed by design: a fire zone after its panel's disablement (until enablement).
ALTER TABLE alarms ADD COLUMN suppressed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE alarms ADD COLUMN out_of_service BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE alarms ADD COLUMN chattering BOOLEAN NOT NULL DEFAULT FALSE;
-- The incident the alarm belongs to now.
ALTER TABLE alarms ADD COLUMN incident_id BIGINT;

-- Devices of a gateway gone silent: their state is unknown until it is heard again.
ALTER TABLE devices ADD COLUMN state_unknown BOOLEAN NOT NULL DEFAULT FALSE;

-- alarm_history gains change kinds (shelved, unshelved, suppressed, chattering, ...): its
-- closed list of changes is dropped.
ALTER TABLE alarm_history DROP CONSTRAINT alarm_history_change_check;
CREATE INDEX alarm_history_time ON alarm_history (at_ms);

CREATE TABLE incidents (
    id                  BIGSERIAL PRIMARY KEY,
    estate_id           TEXT    NOT NULL,
    area                TEXT    NOT NULL,
    category            TEXT    NOT NULL,
    priority            TEXT    NOT NULL,
    title               TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    opened_at_ms        BIGINT  NOT NULL,
    -- 'alarm' or the operator who opened it by hand.
    opened_by           TEXT    NOT NULL,
    last_alarm_at_ms    BIGINT  NOT NULL,
    acknowledged_at_ms  BIGINT,
    acknowledged_by     TEXT,
    on_site_at_ms       BIGINT,
    closed_at_ms        BIGINT,
    state_changed_at_ms BIGINT  NOT NULL,
    transitions         BIGINT  NOT NULL DEFAULT 0,
    -- Escalation: the current run, and the policy snapshotted when the incident opened.
    escalation_run      BIGINT  NOT NULL DEFAULT 1,
    policy              TEXT    NOT NULL,
    flood_group         BOOLEAN NOT NULL DEFAULT FALSE,
    response_breached   BOOLEAN NOT NULL DEFAULT FALSE,
    false_alarm_reason  TEXT,
    override_by         TEXT,
    override_reason     TEXT
);
CREATE INDEX incidents_open ON incidents (estate_id, state);
CREATE INDEX incidents_opened ON incidents (opened_at_ms);

CREATE TABLE incident_alarms (
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    alarm_id    BIGINT NOT NULL REFERENCES alarms (id),
    added_at_ms BIGINT NOT NULL,
    PRIMARY KEY (incident_id, alarm_id)
);

CREATE TABLE incident_steps (
    incident_id BIGINT  NOT NULL REFERENCES incidents (id),
    idx         BIGINT  NOT NULL,
    step_id     TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    mandatory   BOOLEAN NOT NULL,
    -- open | done | skipped
    status      TEXT    NOT NULL,
    done_at_ms  BIGINT,
    done_by     TEXT,
    note        TEXT,
    PRIMARY KEY (incident_id, idx)
);

CREATE TABLE incident_timeline (
    id          BIGSERIAL PRIMARY KEY,
    incident_id BIGINT  NOT NULL REFERENCES incidents (id),
    at_ms       BIGINT  NOT NULL,
    -- opened | alarm | transition | step | escalation | notification | response | note
    kind        TEXT    NOT NULL,
    actor       TEXT,
    text        TEXT    NOT NULL,
    data        TEXT
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);

-- Durable timers. The writer's tick claims due rows with
--   UPDATE timers SET fired_at_ms = now ... WHERE due_at_ms <= now AND fired_at_ms IS NULL RETURNING ...
-- so each fires once, across restarts and across hubs sharing one PostgreSQL.
CREATE TABLE timers (
    id          BIGSERIAL PRIMARY KEY,
    -- escalation | shelve_expiry | response_target | progress
    kind        TEXT    NOT NULL,
    incident_id BIGINT  NOT NULL DEFAULT 0,
    alarm_id    BIGINT  NOT NULL DEFAULT 0,
    run         BIGINT  NOT NULL DEFAULT 0,
    step        BIGINT  NOT NULL DEFAULT 0,
    attempt     BIGINT  NOT NULL DEFAULT 0,
    role        TEXT,
    condition   TEXT,
    due_at_ms   BIGINT  NOT NULL,
    fired_at_ms BIGINT,
    claimed_by  TEXT,
    -- fired | skipped | stopped: ... | superseded | expired | breached | ...
    outcome     TEXT
);
CREATE INDEX timers_due ON timers (due_at_ms) WHERE fired_at_ms IS NULL;
CREATE INDEX timers_incident ON timers (incident_id, run);
CREATE UNIQUE INDEX timers_escalation_once ON timers (incident_id, run, step, attempt) WHERE kind = 'escalation';

-- The notification outbox: written in the writer's transaction, sent by the deliverer.
CREATE TABLE notifications (
    id                 BIGSERIAL PRIMARY KEY,
    incident_id        BIGINT,
    -- escalation | supervisor | flood | response_target
    kind               TEXT    NOT NULL,
    role               TEXT    NOT NULL,
    recipient          TEXT    NOT NULL,
    -- log | http://...
    channel            TEXT    NOT NULL,
    body               TEXT    NOT NULL,
    -- pending | delivered | failed
    status             TEXT    NOT NULL,
    attempts           BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT  NOT NULL,
    lease_until_ms     BIGINT,
    last_error         TEXT,
    created_at_ms      BIGINT  NOT NULL,
    delivered_at_ms    BIGINT
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at_ms);
CREATE INDEX notifications_incident ON notifications (incident_id);

CREATE TABLE flood_periods (
    id            BIGSERIAL PRIMARY KEY,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms   BIGINT,
    alarms_at_start BIGINT NOT NULL
);

-- Vehicle entries per estate and UTC day, for the registration-ratio KPI (no plates here).
CREATE TABLE vehicle_entries (
    estate_id  TEXT   NOT NULL,
    day        TEXT   NOT NULL,
    entries    BIGINT NOT NULL,
    registered BIGINT NOT NULL,
    PRIMARY KEY (estate_id, day)
);
