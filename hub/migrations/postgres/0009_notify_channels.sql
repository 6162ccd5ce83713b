-- Notifications that reach people (issue 14): chat robots, e-mail and SMS channels, digests
-- and quiet hours, answer links and SMS replies, and the delivery states the board shows.
-- Portable SQL.

-- The incident's priority when queued (P1..P4; NULL when about no incident).
ALTER TABLE notifications ADD COLUMN priority TEXT;
-- P1: never held back, by a digest interval or quiet hours.
ALTER TABLE notifications ADD COLUMN urgent BOOLEAN NOT NULL DEFAULT FALSE;
-- zh-CN | en: the recipient's language.
ALTER TABLE notifications ADD COLUMN language TEXT NOT NULL DEFAULT 'zh-CN';
-- Why a pending row waits (digest | quiet_hours); NULL when it does not.
ALTER TABLE notifications ADD COLUMN held TEXT;
-- Status `digested`: the digest notification that carried this one (its outcome is theirs).
ALTER TABLE notifications ADD COLUMN digest_id BIGINT;
-- Accepted by the channel (status `sent`: an SMTP relay, an SMS gateway), or delivered.
ALTER TABLE notifications ADD COLUMN sent_at_ms BIGINT;
-- The escalation step that queued it (0 = the first); NULL for other kinds. A later step is
-- "escalated": it is not held by quiet hours.
ALTER TABLE notifications ADD COLUMN escalation_step BIGINT;
-- The answer link and SMS reply code: when the link stops working, the code, and the answer
-- (acknowledged | on_the_way), when and how (link | sms_reply). A link answers once.
ALTER TABLE notifications ADD COLUMN link_expires_at_ms BIGINT;
ALTER TABLE notifications ADD COLUMN reply_code TEXT;
ALTER TABLE notifications ADD COLUMN answer TEXT;
ALTER TABLE notifications ADD COLUMN answered_at_ms BIGINT;
ALTER TABLE notifications ADD COLUMN answer_via TEXT;

CREATE INDEX notifications_recipient_pending ON notifications (recipient, channel, status);
CREATE INDEX notifications_reply_code ON notifications (reply_code);
CREATE INDEX notifications_digest ON notifications (digest_id);

-- When each recipient (name + channel) was last sent a message: the digest interval runs
-- from it.
CREATE TABLE notify_pacing (
    recipient       TEXT   NOT NULL,
    channel         TEXT   NOT NULL,
    last_sent_at_ms BIGINT NOT NULL,
    PRIMARY KEY (recipient, channel)
);

-- Keys the hub makes for itself at first start (the answer links' signing key when
-- `notify.link_secret` is not set), so that they survive a restart.
CREATE TABLE hub_secrets (
    name          TEXT   PRIMARY KEY,
    value         TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);
