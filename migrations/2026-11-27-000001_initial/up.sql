-- Fresco's initial schema. Every tenant-visible row carries project_id; every query filters on it.

CREATE TABLE runtimes (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL,
    image         TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('python', 'provided')),
    description   TEXT NOT NULL DEFAULT '',
    is_public     BOOLEAN NOT NULL DEFAULT TRUE,
    project_id    TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'disabled')),
    network       BOOLEAN NOT NULL DEFAULT FALSE,
    memory_min_mb INTEGER NOT NULL DEFAULT 64,
    memory_max_mb INTEGER NOT NULL DEFAULT 2048,
    timeout_max_s INTEGER NOT NULL DEFAULT 900,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX runtimes_name_key ON runtimes (name);
CREATE INDEX runtimes_paging ON runtimes (created_at, id);

-- Content-addressed per project: identical bytes in two projects are two rows, so no tenant
-- can learn from upload behaviour that another holds the same code.
CREATE TABLE code_packages (
    project_id TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    format     TEXT NOT NULL CHECK (format IN ('zip', 'tar.gz')),
    size       BIGINT NOT NULL,
    content    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, sha256)
);

CREATE TABLE functions (
    id             UUID PRIMARY KEY,
    project_id     TEXT NOT NULL,
    name           TEXT NOT NULL,
    runtime_id     UUID REFERENCES runtimes (id),
    image          TEXT,
    handler        TEXT NOT NULL,
    memory_mb      INTEGER NOT NULL,
    timeout_s      INTEGER NOT NULL,
    environment    JSONB NOT NULL DEFAULT '{}',
    description    TEXT NOT NULL DEFAULT '',
    code_sha256    TEXT,
    latest_version INTEGER NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((runtime_id IS NULL) <> (image IS NULL)),
    FOREIGN KEY (project_id, code_sha256) REFERENCES code_packages (project_id, sha256)
);
CREATE UNIQUE INDEX functions_project_name_key ON functions (project_id, name);
CREATE INDEX functions_project_paging ON functions (project_id, created_at, id);
CREATE INDEX functions_paging ON functions (created_at, id);
CREATE INDEX functions_runtime ON functions (runtime_id);

CREATE TABLE function_versions (
    function_id UUID NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    project_id  TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    runtime_id  UUID REFERENCES runtimes (id),
    image       TEXT,
    handler     TEXT NOT NULL,
    memory_mb   INTEGER NOT NULL,
    timeout_s   INTEGER NOT NULL,
    environment JSONB NOT NULL DEFAULT '{}',
    code_sha256 TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (function_id, version),
    FOREIGN KEY (project_id, code_sha256) REFERENCES code_packages (project_id, sha256)
);

CREATE TABLE function_aliases (
    function_id    UUID NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    project_id     TEXT NOT NULL,
    version        INTEGER NOT NULL,
    second_version INTEGER,
    second_weight  INTEGER NOT NULL DEFAULT 0 CHECK (second_weight BETWEEN 0 AND 100),
    description    TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (function_id, name),
    FOREIGN KEY (function_id, version) REFERENCES function_versions (function_id, version),
    FOREIGN KEY (function_id, second_version) REFERENCES function_versions (function_id, version)
);

-- Execution records outlive their function: no foreign key to functions.
CREATE TABLE executions (
    id               UUID PRIMARY KEY,
    project_id       TEXT NOT NULL,
    function_id      UUID NOT NULL,
    function_version INTEGER NOT NULL DEFAULT 0,
    alias            TEXT,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'timeout', 'oom', 'error')),
    is_async         BOOLEAN NOT NULL DEFAULT FALSE,
    input            BYTEA,
    input_size       INTEGER NOT NULL DEFAULT 0,
    -- What to run (a wire::FunctionSpec), fixed when the execution is accepted, so the
    -- dispatcher never needs the function tables and a later function update cannot change
    -- a queued execution.
    spec             JSONB,
    result           TEXT,
    error            JSONB,
    duration_ms      DOUBLE PRECISION,
    max_memory_mb    DOUBLE PRECISION,
    memory_mb        INTEGER NOT NULL DEFAULT 0,
    cold             BOOLEAN,
    agent_id         TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    logs             TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ
);
CREATE INDEX executions_project_paging ON executions (project_id, created_at, id);
CREATE INDEX executions_paging ON executions (created_at, id);
CREATE INDEX executions_function ON executions (project_id, function_id, created_at);
-- The async queue: only unfinished async work, so the dispatcher's scan stays small.
CREATE INDEX executions_queue ON executions (created_at) WHERE status = 'queued';
CREATE INDEX executions_running ON executions (agent_id) WHERE status = 'running';

CREATE TABLE quotas (
    project_id TEXT NOT NULL,
    resource   TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, resource)
);

CREATE TABLE agents (
    id                 TEXT PRIMARY KEY,
    host               TEXT NOT NULL,
    url                TEXT NOT NULL,
    state              TEXT NOT NULL DEFAULT 'up' CHECK (state IN ('up', 'down')),
    memory_mb_total    BIGINT NOT NULL DEFAULT 0,
    memory_mb_reserved BIGINT NOT NULL DEFAULT 0,
    cpus               INTEGER NOT NULL DEFAULT 0,
    running            INTEGER NOT NULL DEFAULT 0,
    warm               JSONB NOT NULL DEFAULT '[]',
    images             JSONB NOT NULL DEFAULT '[]',
    version            TEXT NOT NULL DEFAULT '',
    last_heartbeat     TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
