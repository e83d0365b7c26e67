-- The active scheduler's lease (at most one row): who leads, in which term, until when.
-- A standby takes it over, with the next epoch, once it has expired or its holder's session
-- is gone; every leader-only write checks the epoch first (fencing, see scheduler/src/leader.rs).
CREATE TABLE scheduler_leader (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    holder      TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    -- pg_backend_pid() of the holder's lease connection.
    session_pid INTEGER NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    renewed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);

-- The epoch of the scheduler that last changed an async execution's state (claim, result,
-- requeue): which term wrote what, for audits and the fencing tests.
ALTER TABLE executions ADD COLUMN leader_epoch BIGINT;
