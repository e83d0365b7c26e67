DROP TABLE shadow_executions;
DROP TABLE alias_comparison_samples;
DROP TABLE alias_comparisons;
ALTER TABLE function_aliases
    DROP CONSTRAINT function_aliases_shadow_check,
    DROP CONSTRAINT function_aliases_shadow_fkey,
    DROP COLUMN shadow_percent,
    DROP COLUMN shadow_version;
