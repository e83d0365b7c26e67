-- Platform-chained auxiliary functions: a pre hook runs on every invocation's event of its
-- project before the function (and may reject or rewrite it); a post hook receives the event,
-- the result and the execution's metadata after the answer (see docs/api.md, Hooks).

CREATE TABLE hooks (
    id               UUID PRIMARY KEY,
    -- The project whose invocations the hook applies to.
    project_id       TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('pre', 'post')),
    -- Who owns it: the project's admin ('project', its function is one of the project's) or
    -- the cloud ('cloud': a cloud admin attached it; only a cloud admin may see or remove it).
    owner            TEXT NOT NULL CHECK (owner IN ('project', 'cloud')),
    -- What runs: the hook's function, and one of its versions or aliases (neither: latest).
    function_id      UUID NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    function_version INTEGER CHECK (function_version >= 1),
    alias            TEXT,
    -- What a failing or timing-out hook does: 'closed' refuses the invocation, 'open' lets
    -- it through (the answer says so).
    fail_mode        TEXT NOT NULL DEFAULT 'closed' CHECK (fail_mode IN ('open', 'closed')),
    -- post only: runs before the answer and may replace the result.
    redact           BOOLEAN NOT NULL DEFAULT FALSE,
    description      TEXT NOT NULL DEFAULT '',
    created_by       TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (function_version IS NULL OR alias IS NULL),
    CHECK (kind = 'post' OR NOT redact)
);
CREATE INDEX hooks_project_paging ON hooks (project_id, created_at, id);
CREATE INDEX hooks_paging ON hooks (created_at, id);
CREATE INDEX hooks_function ON hooks (function_id);
