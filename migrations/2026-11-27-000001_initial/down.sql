DROP TABLE agents;
DROP TABLE quotas;
DROP TABLE executions;
DROP TABLE function_aliases;
DROP TABLE function_versions;
DROP TABLE functions;
DROP TABLE code_packages;
DROP TABLE runtimes;
