-- The rota (issue 4): assignments, presence on posts, absences, coverage gaps, attendance
-- (late / early), cover acceptances (audit), patrol tours and scans, handover sheets and
-- notes. Portable SQL apart from BIGSERIAL PRIMARY KEY (BIGSERIAL on PostgreSQL).

CREATE TABLE rota_assignments (
    id              BIGSERIAL PRIMARY KEY,
    estate_id       TEXT    NOT NULL,
    post_id         TEXT    NOT NULL,
    shift           TEXT    NOT NULL,
    shift_start_ms  BIGINT  NOT NULL,
    start_ms        BIGINT  NOT NULL,
    end_ms          BIGINT  NOT NULL,
    guard_id        TEXT    NOT NULL,
    -- active, absent (the guard reported absent), cancelled, moved (to cover elsewhere)
    status          TEXT    NOT NULL DEFAULT 'active',
    -- import, api, plan, proposal
    source          TEXT    NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    changed_at_ms   BIGINT  NOT NULL,
    note            TEXT
);
CREATE INDEX rota_assignments_slot ON rota_assignments (post_id, shift_start_ms);
CREATE INDEX rota_assignments_guard ON rota_assignments (guard_id, start_ms);
CREATE INDEX rota_assignments_time ON rota_assignments (end_ms);

-- Who is on which post now (one row per guard on post).
CREATE TABLE rota_presence (
    guard_id    TEXT    PRIMARY KEY,
    post_id     TEXT    NOT NULL,
    since_ms    BIGINT  NOT NULL
);

-- Every clock-on and clock-off: badge, API, or pulled by an incident.
CREATE TABLE rota_presence_log (
    id          BIGSERIAL PRIMARY KEY,
    guard_id    TEXT    NOT NULL,
    post_id     TEXT    NOT NULL,
    estate_id   TEXT    NOT NULL,
    change      TEXT    NOT NULL,   -- on, off, pulled
    via         TEXT    NOT NULL,   -- badge, api, incident
    at_ms       BIGINT  NOT NULL,
    incident_id BIGINT,
    actor       TEXT
);
CREATE INDEX rota_presence_log_time ON rota_presence_log (at_ms);

CREATE TABLE rota_absences (
    id          BIGSERIAL PRIMARY KEY,
    guard_id    TEXT    NOT NULL,
    start_ms    BIGINT  NOT NULL,
    end_ms      BIGINT  NOT NULL,
    reason      TEXT    NOT NULL,
    reported_by TEXT    NOT NULL,
    at_ms       BIGINT  NOT NULL
);

-- Coverage gaps of the ledger (a post short of its headcount during a shift).
CREATE TABLE rota_gaps (
    id              BIGSERIAL PRIMARY KEY,
    estate_id       TEXT    NOT NULL,
    post_id         TEXT    NOT NULL,
    shift_start_ms  BIGINT  NOT NULL,
    required        BIGINT  NOT NULL,
    opened_at_ms    BIGINT  NOT NULL,
    alarm_at_ms     BIGINT,
    closed_at_ms    BIGINT
);
CREATE INDEX rota_gaps_open ON rota_gaps (post_id, closed_at_ms);
CREATE INDEX rota_gaps_time ON rota_gaps (opened_at_ms);

-- Late clock-in and early clock-out.
CREATE TABLE rota_attendance (
    id              BIGSERIAL PRIMARY KEY,
    guard_id        TEXT    NOT NULL,
    post_id         TEXT    NOT NULL,
    estate_id       TEXT    NOT NULL,
    shift_start_ms  BIGINT  NOT NULL,
    kind            TEXT    NOT NULL,   -- late, early
    minutes         BIGINT  NOT NULL,
    at_ms           BIGINT  NOT NULL
);

-- Audit of rota changes (accepted proposals, assignments, imports, plans, absences).
CREATE TABLE rota_audit (
    id          BIGSERIAL PRIMARY KEY,
    at_ms       BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    detail      TEXT    NOT NULL
);

CREATE TABLE rota_patrol_tours (
    id              BIGSERIAL PRIMARY KEY,
    route_id        TEXT    NOT NULL,
    estate_id       TEXT    NOT NULL,
    started_at_ms   BIGINT  NOT NULL,
    checkpoints     TEXT    NOT NULL,   -- JSON: the order of this tour
    status          TEXT    NOT NULL,   -- running, on_time, late, missed
    guard_id        TEXT,
    ended_at_ms     BIGINT,
    findings        TEXT,
    actions         TEXT,
    recorded_by     TEXT
);
CREATE INDEX rota_patrol_tours_route ON rota_patrol_tours (route_id, started_at_ms);

CREATE TABLE rota_patrol_scans (
    id              BIGSERIAL PRIMARY KEY,
    tour_id         BIGINT  NOT NULL REFERENCES rota_patrol_tours (id),
    checkpoint      TEXT    NOT NULL,
    position        BIGINT  NOT NULL,
    expected_at_ms  BIGINT  NOT NULL,
    scanned_at_ms   BIGINT  NOT NULL,
    guard_id        TEXT,
    late_min        BIGINT  NOT NULL
);

CREATE TABLE rota_handovers (
    id              BIGSERIAL PRIMARY KEY,
    estate_id       TEXT    NOT NULL,
    post_id         TEXT    NOT NULL,
    shift_start_ms  BIGINT  NOT NULL,
    created_at_ms   BIGINT  NOT NULL,
    sheet           TEXT    NOT NULL,   -- JSON
    acked_by        TEXT,
    acked_at_ms     BIGINT,
    UNIQUE (post_id, shift_start_ms)
);

CREATE TABLE rota_notes (
    id              BIGSERIAL PRIMARY KEY,
    estate_id       TEXT    NOT NULL,
    post_id         TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    author          TEXT    NOT NULL,
    at_ms           BIGINT  NOT NULL,
    handover_id     BIGINT
);
