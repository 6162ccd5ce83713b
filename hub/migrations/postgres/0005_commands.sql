-- Operator commands to devices (POST /api/v1/devices/{id}/commands): who asked, why, when,
-- for which device and incident, and what became of it. Written only by the hub's writer
-- (hub/src/commands/queries.rs). The wire's command_id is "cmd-<id>".
CREATE TABLE commands (
    id             BIGSERIAL PRIMARY KEY,
    estate_id      TEXT    NOT NULL,
    gateway_id     TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    device_kind    TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    -- JSON object of string arguments
    args           TEXT    NOT NULL,
    operator       TEXT    NOT NULL,
    reason         TEXT,
    incident_id    BIGINT,
    -- sent | ok | failed | timed_out | gateway_offline
    state          TEXT    NOT NULL,
    detail         TEXT,
    created_at_ms  BIGINT  NOT NULL,
    -- after it, the gateway does not execute the command
    deadline_ms    BIGINT  NOT NULL,
    finished_at_ms BIGINT
);

CREATE INDEX commands_device ON commands (estate_id, device_id, id);
CREATE INDEX commands_incident ON commands (incident_id) WHERE incident_id IS NOT NULL;

-- A `command_deadline` timer names its command in timers.alarm_id (the timer's subject).
