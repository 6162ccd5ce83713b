-- Devices in maintenance: their alarms are suppressed by design (ISA-18.2) while the
-- maintenance lasts — kept in the book and its history, but they open no incident and
-- notify nobody. `until_ms` NULL: until an operator ends it.
CREATE TABLE device_maintenance (
    estate_id   TEXT   NOT NULL,
    device_id   TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    operator    TEXT   NOT NULL,
    since_ms    BIGINT NOT NULL,
    until_ms    BIGINT,
    PRIMARY KEY (estate_id, device_id)
);
