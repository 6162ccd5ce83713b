-- Flags declared BOOLEAN become INTEGER (still 0/1). The hub reads both backends through
-- sqlx's `Any` driver, which refuses a SQLite column declared BOOLEAN; values are unchanged.
-- SQLite cannot change a column's type, so each flag is copied into a new column.
DROP INDEX alarms_active;

ALTER TABLE gateways ADD COLUMN connected_i INTEGER NOT NULL DEFAULT 0;
UPDATE gateways SET connected_i = connected;
ALTER TABLE gateways DROP COLUMN connected;
ALTER TABLE gateways RENAME COLUMN connected_i TO connected;

ALTER TABLE alarms ADD COLUMN active_i INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarms ADD COLUMN acknowledged_i INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarms ADD COLUMN latched_i INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarms ADD COLUMN suppressed_i INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarms ADD COLUMN out_of_service_i INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarms ADD COLUMN chattering_i INTEGER NOT NULL DEFAULT 0;
UPDATE alarms SET active_i = active, acknowledged_i = acknowledged, latched_i = latched,
    suppressed_i = suppressed, out_of_service_i = out_of_service, chattering_i = chattering;
ALTER TABLE alarms DROP COLUMN active;
ALTER TABLE alarms DROP COLUMN acknowledged;
ALTER TABLE alarms DROP COLUMN latched;
ALTER TABLE alarms DROP COLUMN suppressed;
ALTER TABLE alarms DROP COLUMN out_of_service;
ALTER TABLE alarms DROP COLUMN chattering;
ALTER TABLE alarms RENAME COLUMN active_i TO active;
ALTER TABLE alarms RENAME COLUMN acknowledged_i TO acknowledged;
ALTER TABLE alarms RENAME COLUMN latched_i TO latched;
ALTER TABLE alarms RENAME COLUMN suppressed_i TO suppressed;
ALTER TABLE alarms RENAME COLUMN out_of_service_i TO out_of_service;
ALTER TABLE alarms RENAME COLUMN chattering_i TO chattering;
CREATE INDEX alarms_active ON alarms (active, estate_id);

ALTER TABLE command_results ADD COLUMN ok_i INTEGER NOT NULL DEFAULT 0;
UPDATE command_results SET ok_i = ok;
ALTER TABLE command_results DROP COLUMN ok;
ALTER TABLE command_results RENAME COLUMN ok_i TO ok;

ALTER TABLE devices ADD COLUMN state_unknown_i INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET state_unknown_i = state_unknown;
ALTER TABLE devices DROP COLUMN state_unknown;
ALTER TABLE devices RENAME COLUMN state_unknown_i TO state_unknown;

ALTER TABLE incidents ADD COLUMN flood_group_i INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN response_breached_i INTEGER NOT NULL DEFAULT 0;
UPDATE incidents SET flood_group_i = flood_group, response_breached_i = response_breached;
ALTER TABLE incidents DROP COLUMN flood_group;
ALTER TABLE incidents DROP COLUMN response_breached;
ALTER TABLE incidents RENAME COLUMN flood_group_i TO flood_group;
ALTER TABLE incidents RENAME COLUMN response_breached_i TO response_breached;

ALTER TABLE incident_steps ADD COLUMN mandatory_i INTEGER NOT NULL DEFAULT 0;
UPDATE incident_steps SET mandatory_i = mandatory;
ALTER TABLE incident_steps DROP COLUMN mandatory;
ALTER TABLE incident_steps RENAME COLUMN mandatory_i TO mandatory;

ALTER TABLE notifications ADD COLUMN urgent_i INTEGER NOT NULL DEFAULT 0;
UPDATE notifications SET urgent_i = urgent;
ALTER TABLE notifications DROP COLUMN urgent;
ALTER TABLE notifications RENAME COLUMN urgent_i TO urgent;
