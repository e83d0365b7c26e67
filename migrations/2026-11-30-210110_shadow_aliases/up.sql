-- Parallel testing through aliases: an alias may name a shadow version that receives a copy of
-- a sampled share of its invocations; the scheduler compares each copy's result with the
-- primary's when the copy ends and keeps per-alias counts and a bounded sample of differences.

ALTER TABLE function_aliases
    ADD COLUMN shadow_version INTEGER,
    ADD COLUMN shadow_percent INTEGER NOT NULL DEFAULT 0
        CHECK (shadow_percent BETWEEN 0 AND 100),
    ADD CONSTRAINT function_aliases_shadow_fkey FOREIGN KEY (function_id, shadow_version)
        REFERENCES function_versions (function_id, version),
    ADD CONSTRAINT function_aliases_shadow_check
        CHECK (shadow_version IS NOT NULL OR shadow_percent = 0);

-- The counts of one comparison period: `id` changes whenever the counts restart (the alias's
-- version or shadow version changed), so copies taken before a restart are never counted.
CREATE TABLE alias_comparisons (
    function_id    UUID NOT NULL,
    alias          TEXT NOT NULL,
    project_id     TEXT NOT NULL,
    id             UUID NOT NULL UNIQUE,
    version        INTEGER NOT NULL,
    shadow_version INTEGER NOT NULL,
    same           BIGINT NOT NULL DEFAULT 0,
    different      BIGINT NOT NULL DEFAULT 0,
    shadow_error   BIGINT NOT NULL DEFAULT 0,
    primary_error  BIGINT NOT NULL DEFAULT 0,
    skipped        BIGINT NOT NULL DEFAULT 0,
    since          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (function_id, alias),
    FOREIGN KEY (function_id, alias) REFERENCES function_aliases (function_id, name)
        ON DELETE CASCADE
);

-- The last differing pairs of a comparison period (bounded in count and bytes when written).
CREATE TABLE alias_comparison_samples (
    seq            BIGSERIAL PRIMARY KEY,
    comparison_id  UUID NOT NULL REFERENCES alias_comparisons (id) ON DELETE CASCADE,
    execution_id   UUID NOT NULL,
    primary_execution_id UUID NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('different', 'shadow_error')),
    input          TEXT NOT NULL,
    primary_status TEXT NOT NULL,
    primary_result TEXT NOT NULL,
    shadow_status  TEXT NOT NULL,
    shadow_result  TEXT NOT NULL,
    truncated      BOOLEAN NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX alias_comparison_samples_period ON alias_comparison_samples (comparison_id, seq);

-- A shadow copy in flight: what the primary answered, read (and deleted) in the transaction
-- that writes the copy's end. Goes with its execution.
CREATE TABLE shadow_executions (
    execution_id         UUID PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    comparison_id        UUID NOT NULL,
    primary_execution_id UUID NOT NULL,
    primary_status       TEXT NOT NULL,
    -- sha256 (hex) of the primary's result as stored ("null" when it gave none).
    primary_digest       TEXT NOT NULL,
    -- The primary's result, cut to sample_bytes.
    primary_result       TEXT NOT NULL,
    primary_truncated    BOOLEAN NOT NULL,
    sample_limit         INTEGER NOT NULL,
    sample_bytes         INTEGER NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
