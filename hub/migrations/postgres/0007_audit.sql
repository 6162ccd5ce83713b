-- The audit log (issue 12): every operator action, login and failed login, who (actor, role),
-- from where (source IP), what (action, target, detail) and when. Append-only and written
-- only by the hub's writer, in the transaction of the action it records
-- (hub/src/audit/queries.rs). Each row is chained to the previous one: `hash` is the SHA-256
-- of the row's canonical encoding including `prev_hash` (hub/src/audit/chain.rs), so an
-- edited, deleted or reordered row is found by `gatehouse-hub audit verify`.
-- `seq` is assigned by the writer (last + 1), so the log has no gaps.
CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT  NOT NULL,
    actor      TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    -- IP address the action came from; NULL when unknown
    source     TEXT,
    -- e.g. alarm.acknowledge, incident.transition, rota.check_in, auth.login_failed
    action     TEXT    NOT NULL,
    -- e.g. alarm:42, incident:7, device:estate-a/door-1, user:alice
    target     TEXT    NOT NULL,
    -- JSON object, hashed exactly as stored
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);

CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_action ON audit (action, seq);
