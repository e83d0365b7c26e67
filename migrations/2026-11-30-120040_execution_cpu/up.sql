-- CPU time the sandbox used for an execution (from thaw to freeze), in milliseconds, as the
-- agent measured it; NULL where the node could not tell.
ALTER TABLE executions ADD COLUMN cpu_ms DOUBLE PRECISION;
