-- Warm containers that must stop serving: a function deleted, a version deleted, or the
-- function's code or settings changed. Each row is written in the same transaction as that
-- change, under a global advisory transaction lock taken just before the insert, so rows
-- become visible in `seq` order: a reader that has seen `seq` N has seen every row below N.
-- Schedulers read new rows and hand them to agents in heartbeat replies; agents acknowledge
-- the highest `seq` they applied. Rows are purged (a prefix of `seq`) after
-- `[scheduler] retirement_retention`.
CREATE TABLE function_retirements (
    seq            BIGSERIAL PRIMARY KEY,
    project_id     TEXT NOT NULL,
    function_id    UUID NOT NULL,
    -- NULL: every version of the function.
    version        INTEGER,
    -- NULL: every revision; else only specs resolved before this revision.
    below_revision BIGINT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX function_retirements_created ON function_retirements (created_at);

-- The revision of a function's current (version 0) settings and code: the `seq` of the
-- retirement its last change wrote, 0 before any change. It travels in the spec, so an agent
-- tells a container of the current state from one of a retired state.
ALTER TABLE functions ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
