-- Retention (`[retention] events_days`): the writer's tick deletes the oldest events by
-- the time they were stored, a small batch at a time.
CREATE INDEX events_ingested ON events (ingested_at_ms);
