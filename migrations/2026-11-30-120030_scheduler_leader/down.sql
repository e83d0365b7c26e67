ALTER TABLE executions DROP COLUMN leader_epoch;
DROP TABLE scheduler_leader;
