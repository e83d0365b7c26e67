ALTER TABLE executions DROP CONSTRAINT executions_code_fkey;
DROP INDEX executions_code;
ALTER TABLE executions DROP COLUMN code_sha256;
CREATE INDEX executions_queue ON executions (created_at) WHERE status = 'queued';
DROP INDEX executions_queue_project;
