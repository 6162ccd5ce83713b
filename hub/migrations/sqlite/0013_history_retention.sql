-- Retention of the other histories (`[retention] incidents_days`, `rota_days`): the writer
-- deletes a small chunk, oldest first, per tick; these indexes make finding that chunk an
-- index walk, not a scan (alarm_history.at_ms and rota_presence_log.at_ms have theirs).
CREATE INDEX incidents_closed ON incidents (closed_at_ms);
CREATE INDEX rota_attendance_time ON rota_attendance (at_ms);
CREATE INDEX rota_gaps_closed ON rota_gaps (closed_at_ms);
