-- OpenStack notification triggers: a trigger of kind 'notification' names the event types
-- (exact, or patterns with '*') whose notifications of its own project invoke its function.

ALTER TABLE triggers DROP CONSTRAINT triggers_kind_check;
ALTER TABLE triggers ADD CONSTRAINT triggers_kind_check
    CHECK (kind IN ('cron', 'webhook', 'notification'));
ALTER TABLE triggers ADD COLUMN event_types TEXT[];
ALTER TABLE triggers ADD CONSTRAINT triggers_event_types_check
    CHECK ((kind = 'notification') = (event_types IS NOT NULL AND cardinality(event_types) > 0));
-- The consumer reads the enabled notification triggers of one project per notification.
CREATE INDEX triggers_notification ON triggers (project_id)
    WHERE kind = 'notification' AND enabled;
