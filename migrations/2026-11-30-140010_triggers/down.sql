DROP TABLE dead_letters;
DROP TABLE function_event_configs;
ALTER TABLE executions DROP COLUMN chain_depth;
ALTER TABLE executions DROP COLUMN trigger_id;
DROP TABLE triggers;
