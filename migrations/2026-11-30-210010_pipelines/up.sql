-- Pipelines: named, versioned definitions of steps (functions of the same project, in
-- sequence, in parallel branches, mapped over a list), and their runs. Each step of a run is
-- an async execution of the durable queue; the run advances in the transaction that writes a
-- step's end.

CREATE TABLE pipelines (
    id          UUID PRIMARY KEY,
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- The current version (1, 2, ...): an update stores a new one.
    version     INTEGER NOT NULL CHECK (version >= 1),
    -- The current version's definition, its functions resolved to ids.
    definition  JSONB NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX pipelines_project_name_key ON pipelines (project_id, name);
CREATE INDEX pipelines_project_paging ON pipelines (project_id, created_at, id);
CREATE INDEX pipelines_paging ON pipelines (created_at, id);

-- Every version a pipeline had.
CREATE TABLE pipeline_versions (
    pipeline_id UUID NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    definition  JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline_id, version)
);

-- A run keeps the definition it started with: an update or a delete of its pipeline does not
-- change a run under way.
CREATE TABLE pipeline_runs (
    id               UUID PRIMARY KEY,
    project_id       TEXT NOT NULL,
    pipeline_id      UUID NOT NULL,
    pipeline_name    TEXT NOT NULL,
    pipeline_version INTEGER NOT NULL,
    definition       JSONB NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    input            JSONB NOT NULL,
    result           JSONB,
    error            JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ
);
CREATE INDEX pipeline_runs_project_paging ON pipeline_runs (project_id, created_at, id);
CREATE INDEX pipeline_runs_paging ON pipeline_runs (created_at, id);
CREATE INDEX pipeline_runs_pipeline ON pipeline_runs (pipeline_id);

-- A step's execution: its run, its place in the definition and its attempt (the step's own
-- retries; each attempt is an execution of its own, with an id derived from the three).
ALTER TABLE executions ADD COLUMN pipeline_run_id UUID;
ALTER TABLE executions ADD COLUMN pipeline_step TEXT;
ALTER TABLE executions ADD COLUMN pipeline_attempt INTEGER;
-- Not claimed before this time (a step's retry backoff).
ALTER TABLE executions ADD COLUMN not_before TIMESTAMPTZ;
CREATE INDEX executions_pipeline_run ON executions (pipeline_run_id)
    WHERE pipeline_run_id IS NOT NULL;
