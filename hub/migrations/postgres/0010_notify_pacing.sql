-- Pacing (issue 14 §3): the recipient's preferences as they were when the row was queued, so
-- that the deliverer's claim can pace a recipient's rows without the roster (which may have
-- changed since) and across restarts.

-- "22:00-07:00" (estate local time): P3/P4 first notices wait until the window ends. NULL: none.
ALTER TABLE notifications ADD COLUMN quiet_hours TEXT;
-- At most one message per this many seconds; NULL: `notify.digest_interval_s`.
ALTER TABLE notifications ADD COLUMN digest_interval_s BIGINT;
