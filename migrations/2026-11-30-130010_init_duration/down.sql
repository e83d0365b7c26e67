ALTER TABLE executions DROP COLUMN init_duration_ms;
