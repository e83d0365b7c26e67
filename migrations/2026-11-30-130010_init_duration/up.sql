-- Time the runtime spent initialising before it took the execution's event (a cold start:
-- the sandbox's start, the runtime's boot and the handler's import; a pre-warmed start: the
-- handler's import), in milliseconds, as the agent measured it; NULL for a warm start.
ALTER TABLE executions ADD COLUMN init_duration_ms DOUBLE PRECISION;
