-- Events in: triggers that invoke a function (cron ticks, webhooks), and what becomes of an
-- async invocation's outcome (retries, destinations, the dead-letter list).

CREATE TABLE triggers (
    id               UUID PRIMARY KEY,
    project_id       TEXT NOT NULL,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('cron', 'webhook')),
    -- What runs: the function, and one of its versions or aliases (neither: its latest state).
    function_id      UUID NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    function_version INTEGER CHECK (function_version >= 1),
    alias            TEXT,
    -- A JSON object whose members every event of this trigger starts from.
    input            JSONB NOT NULL DEFAULT '{}',
    enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    description      TEXT NOT NULL DEFAULT '',
    -- cron: the expression, its time zone (IANA name) and the next tick to fire, in UTC.
    cron             TEXT,
    timezone         TEXT,
    next_run_at      TIMESTAMPTZ,
    last_run_at      TIMESTAMPTZ,
    -- Why the last tick could not be queued (the function cannot run), if it could not.
    last_error       TEXT,
    -- webhook: the unguessable token of its URL, the optional HMAC secret, its rate limit
    -- (calls per minute, -1 unlimited) with the current window, and whether a call waits for
    -- the function's result.
    webhook_token    TEXT,
    secret           TEXT,
    rate_limit       INTEGER NOT NULL DEFAULT -1,
    rate_window      TIMESTAMPTZ,
    rate_count       INTEGER NOT NULL DEFAULT 0,
    sync             BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (function_version IS NULL OR alias IS NULL),
    CHECK ((kind = 'cron') = (cron IS NOT NULL AND timezone IS NOT NULL)),
    CHECK ((kind = 'webhook') = (webhook_token IS NOT NULL))
);
CREATE UNIQUE INDEX triggers_project_name_key ON triggers (project_id, name);
CREATE UNIQUE INDEX triggers_webhook_key ON triggers (webhook_token);
CREATE INDEX triggers_project_paging ON triggers (project_id, created_at, id);
CREATE INDEX triggers_paging ON triggers (created_at, id);
CREATE INDEX triggers_function ON triggers (function_id);
-- The cron pass reads only the due triggers, through this index: its cost follows the ticks
-- due, not the number of triggers.
CREATE INDEX triggers_due ON triggers (next_run_at) WHERE kind = 'cron' AND enabled;

-- The trigger that queued an execution, if one did; and how many destinations deep it is
-- (an execution a destination queued is one deeper than the one whose outcome it carries).
ALTER TABLE executions ADD COLUMN trigger_id UUID;
ALTER TABLE executions ADD COLUMN chain_depth INTEGER NOT NULL DEFAULT 0;

-- A function's async invocation config (Lambda's event invoke config).
CREATE TABLE function_event_configs (
    function_id        UUID PRIMARY KEY REFERENCES functions (id) ON DELETE CASCADE,
    project_id         TEXT NOT NULL,
    -- Runs of one event when the function fails (its own error, timeout, memory).
    max_attempts       INTEGER NOT NULL DEFAULT 1 CHECK (max_attempts BETWEEN 1 AND 10),
    -- An event older than this (seconds since it was accepted) is not run again.
    max_event_age_s    INTEGER CHECK (max_event_age_s BETWEEN 1 AND 86400),
    on_success         UUID REFERENCES functions (id) ON DELETE SET NULL,
    on_failure         UUID REFERENCES functions (id) ON DELETE SET NULL,
    -- A failed event is kept in the function's dead-letter list.
    dead_letter        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (on_failure IS NULL OR NOT dead_letter)
);

-- Failed async events kept for the project to look at and replay.
CREATE TABLE dead_letters (
    id           UUID PRIMARY KEY,
    project_id   TEXT NOT NULL,
    function_id  UUID NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    execution_id UUID NOT NULL UNIQUE,
    input        BYTEA,
    status       TEXT NOT NULL,
    error        JSONB,
    attempts     INTEGER NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_paging ON dead_letters (project_id, function_id, created_at, id);
