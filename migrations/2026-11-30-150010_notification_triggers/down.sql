DELETE FROM triggers WHERE kind = 'notification';
DROP INDEX triggers_notification;
ALTER TABLE triggers DROP CONSTRAINT triggers_event_types_check;
ALTER TABLE triggers DROP COLUMN event_types;
ALTER TABLE triggers DROP CONSTRAINT triggers_kind_check;
ALTER TABLE triggers ADD CONSTRAINT triggers_kind_check CHECK (kind IN ('cron', 'webhook'));
