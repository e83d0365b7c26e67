ALTER TABLE functions DROP COLUMN revision;
DROP TABLE function_retirements;
