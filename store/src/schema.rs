// The tables of migrations/, as diesel sees them. Keep in step with the SQL.

diesel::table! {
    runtimes (id) {
        id -> Uuid,
        name -> Text,
        image -> Text,
        kind -> Text,
        description -> Text,
        is_public -> Bool,
        project_id -> Text,
        status -> Text,
        network -> Bool,
        memory_min_mb -> Int4,
        memory_max_mb -> Int4,
        timeout_max_s -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    code_packages (project_id, sha256) {
        project_id -> Text,
        sha256 -> Text,
        format -> Text,
        size -> Int8,
        content -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    functions (id) {
        id -> Uuid,
        project_id -> Text,
        name -> Text,
        runtime_id -> Nullable<Uuid>,
        image -> Nullable<Text>,
        handler -> Text,
        memory_mb -> Int4,
        timeout_s -> Int4,
        environment -> Jsonb,
        description -> Text,
        code_sha256 -> Nullable<Text>,
        latest_version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        revision -> Int8,
    }
}

diesel::table! {
    function_versions (function_id, version) {
        function_id -> Uuid,
        version -> Int4,
        project_id -> Text,
        description -> Text,
        runtime_id -> Nullable<Uuid>,
        image -> Nullable<Text>,
        handler -> Text,
        memory_mb -> Int4,
        timeout_s -> Int4,
        environment -> Jsonb,
        code_sha256 -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    function_aliases (function_id, name) {
        function_id -> Uuid,
        name -> Text,
        project_id -> Text,
        version -> Int4,
        second_version -> Nullable<Int4>,
        second_weight -> Int4,
        description -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        shadow_version -> Nullable<Int4>,
        shadow_percent -> Int4,
    }
}

diesel::table! {
    executions (id) {
        id -> Uuid,
        project_id -> Text,
        function_id -> Uuid,
        function_version -> Int4,
        alias -> Nullable<Text>,
        status -> Text,
        is_async -> Bool,
        input -> Nullable<Bytea>,
        input_size -> Int4,
        spec -> Nullable<Jsonb>,
        result -> Nullable<Text>,
        error -> Nullable<Jsonb>,
        duration_ms -> Nullable<Float8>,
        max_memory_mb -> Nullable<Float8>,
        memory_mb -> Int4,
        cold -> Nullable<Bool>,
        agent_id -> Nullable<Text>,
        attempts -> Int4,
        logs -> Text,
        /// The scheduler term that last wrote this row (fencing).
        leader_epoch -> Nullable<Int8>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        /// Generated from `spec` while queued or running (read-only).
        code_sha256 -> Nullable<Text>,
        cpu_ms -> Nullable<Float8>,
        /// The trigger that queued it, if one did.
        trigger_id -> Nullable<Uuid>,
        /// How many destinations deep it is (0: invoked, or fired by a trigger).
        chain_depth -> Int4,
        init_duration_ms -> Nullable<Float8>,
        /// The pipeline run this execution is a step of, its place and its attempt.
        pipeline_run_id -> Nullable<Uuid>,
        pipeline_step -> Nullable<Text>,
        pipeline_attempt -> Nullable<Int4>,
        /// Not claimed before this time (a pipeline step's retry backoff).
        not_before -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    quotas (project_id, resource) {
        project_id -> Text,
        resource -> Text,
        hard_limit -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    agents (id) {
        id -> Text,
        host -> Text,
        url -> Text,
        state -> Text,
        memory_mb_total -> Int8,
        memory_mb_reserved -> Int8,
        cpus -> Int4,
        running -> Int4,
        warm -> Jsonb,
        images -> Jsonb,
        version -> Text,
        last_heartbeat -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    function_retirements (seq) {
        seq -> Int8,
        project_id -> Text,
        function_id -> Uuid,
        version -> Nullable<Int4>,
        below_revision -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    scheduler_leader (id) {
        id -> Int2,
        holder -> Text,
        epoch -> Int8,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    triggers (id) {
        id -> Uuid,
        project_id -> Text,
        name -> Text,
        kind -> Text,
        function_id -> Uuid,
        function_version -> Nullable<Int4>,
        alias -> Nullable<Text>,
        input -> Jsonb,
        enabled -> Bool,
        description -> Text,
        cron -> Nullable<Text>,
        timezone -> Nullable<Text>,
        next_run_at -> Nullable<Timestamptz>,
        last_run_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        webhook_token -> Nullable<Text>,
        secret -> Nullable<Text>,
        rate_limit -> Int4,
        rate_window -> Nullable<Timestamptz>,
        rate_count -> Int4,
        sync -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        event_types -> Nullable<Array<Text>>,
    }
}

diesel::table! {
    function_event_configs (function_id) {
        function_id -> Uuid,
        project_id -> Text,
        max_attempts -> Int4,
        max_event_age_s -> Nullable<Int4>,
        on_success -> Nullable<Uuid>,
        on_failure -> Nullable<Uuid>,
        dead_letter -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Uuid,
        project_id -> Text,
        function_id -> Uuid,
        execution_id -> Uuid,
        input -> Nullable<Bytea>,
        status -> Text,
        error -> Nullable<Jsonb>,
        attempts -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    hooks (id) {
        id -> Uuid,
        project_id -> Text,
        kind -> Text,
        owner -> Text,
        function_id -> Uuid,
        function_version -> Nullable<Int4>,
        alias -> Nullable<Text>,
        fail_mode -> Text,
        redact -> Bool,
        description -> Text,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    pipelines (id) {
        id -> Uuid,
        project_id -> Text,
        name -> Text,
        version -> Int4,
        definition -> Jsonb,
        description -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    pipeline_versions (pipeline_id, version) {
        pipeline_id -> Uuid,
        version -> Int4,
        definition -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    pipeline_runs (id) {
        id -> Uuid,
        project_id -> Text,
        pipeline_id -> Uuid,
        pipeline_name -> Text,
        pipeline_version -> Int4,
        definition -> Jsonb,
        status -> Text,
        input -> Jsonb,
        result -> Nullable<Jsonb>,
        error -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    alias_comparisons (function_id, alias) {
        function_id -> Uuid,
        alias -> Text,
        project_id -> Text,
        id -> Uuid,
        version -> Int4,
        shadow_version -> Int4,
        same -> Int8,
        different -> Int8,
        shadow_error -> Int8,
        primary_error -> Int8,
        skipped -> Int8,
        since -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    alias_comparison_samples (seq) {
        seq -> Int8,
        comparison_id -> Uuid,
        execution_id -> Uuid,
        primary_execution_id -> Uuid,
        kind -> Text,
        input -> Text,
        primary_status -> Text,
        primary_result -> Text,
        shadow_status -> Text,
        shadow_result -> Text,
        truncated -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    shadow_executions (execution_id) {
        execution_id -> Uuid,
        comparison_id -> Uuid,
        primary_execution_id -> Uuid,
        primary_status -> Text,
        primary_digest -> Text,
        primary_result -> Text,
        primary_truncated -> Bool,
        sample_limit -> Int4,
        sample_bytes -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(functions -> runtimes (runtime_id));
diesel::joinable!(function_versions -> functions (function_id));
diesel::joinable!(function_aliases -> functions (function_id));
diesel::allow_tables_to_appear_in_same_query!(
    runtimes,
    code_packages,
    functions,
    function_versions,
    function_aliases,
    executions,
    quotas,
    agents,
    function_retirements,
    scheduler_leader,
    triggers,
    function_event_configs,
    dead_letters,
    hooks,
    pipelines,
    pipeline_versions,
    pipeline_runs,
    alias_comparisons,
    alias_comparison_samples,
    shadow_executions,
);
