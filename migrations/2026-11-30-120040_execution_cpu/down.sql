ALTER TABLE executions DROP COLUMN cpu_ms;
