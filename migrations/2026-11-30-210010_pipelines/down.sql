DROP INDEX executions_pipeline_run;
ALTER TABLE executions DROP COLUMN not_before;
ALTER TABLE executions DROP COLUMN pipeline_attempt;
ALTER TABLE executions DROP COLUMN pipeline_step;
ALTER TABLE executions DROP COLUMN pipeline_run_id;
DROP TABLE pipeline_runs;
DROP TABLE pipeline_versions;
DROP TABLE pipelines;
