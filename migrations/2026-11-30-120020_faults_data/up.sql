-- Bounds on queued work, fair dispatch, and code kept for the executions that need it.

-- A project's queued executions, oldest first: the dispatcher claims per project through it
-- (fair dispatch) and the API counts a project's queue with it (queued_executions quota).
CREATE INDEX executions_queue_project ON executions (project_id, created_at) WHERE status = 'queued';
-- It replaces the queue's index by creation time alone: with both, the planner may read a
-- project's queue through the time index, walking every other project's queued rows.
DROP INDEX executions_queue;

-- The code package an unfinished execution will run, derived from its spec. The foreign key
-- keeps that package from being deleted while the execution is queued or running (a code
-- update or a function delete leaves it for the periodic collection); once the execution is
-- finished the column turns NULL and the package may go. NOT VALID: rows written before this
-- migration are not checked (some may already have lost their package), new ones are.
ALTER TABLE executions ADD COLUMN code_sha256 TEXT GENERATED ALWAYS AS (
    CASE WHEN status IN ('queued', 'running') THEN spec->>'code_sha256' END
) STORED;
CREATE INDEX executions_code ON executions (project_id, code_sha256) WHERE code_sha256 IS NOT NULL;
ALTER TABLE executions ADD CONSTRAINT executions_code_fkey
    FOREIGN KEY (project_id, code_sha256) REFERENCES code_packages (project_id, sha256) NOT VALID;
