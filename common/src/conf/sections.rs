//! Every configuration section Fresco reads, one struct each. One file for all sections keeps
//! the whole option list reviewable in one place (Nova keeps one module per area; Fresco's
//! option count is still small).

use super::SectionDoc;
use crate::config_section;

config_section! {
    /// Options shared by every Fresco service.
    pub struct DefaultSection("DEFAULT") {
        /// Name of this node; empty means the machine's hostname.
        host: String = "",
        /// Directory where the services keep local state (agent code cache, sockets).
        state_path: String = "/var/lib/fresco",
        /// How API callers are authenticated: `keystone`, or `noauth` for development only (tokens `user:project[:role,...]` are trusted as they are).
        auth_strategy: String = "keystone",
        /// Log at debug level.
        debug: bool = "false",
    }
}

config_section! {
    /// The REST API service (fresco-api).
    pub struct ApiSection("api") {
        /// Address the API listens on.
        bind_host: String = "127.0.0.1",
        /// Port the API listens on.
        bind_port: u16 = "8900",
        /// Worker threads serving HTTP; 0 means one per CPU core.
        workers: usize = "0",
        /// Base URL clients reach the API at, used in links; empty means http://bind_host:bind_port.
        public_url: String = "",
        /// Largest JSON request body accepted, in bytes.
        max_json_body_bytes: usize = "1048576",
        /// Largest code package accepted on upload, in bytes (checked before the body is read).
        max_package_bytes: usize = "52428800",
        /// Largest total unpacked size of a code package, in bytes (zip and gzip bombs are refused).
        max_unpacked_bytes: u64 = "262144000",
        /// Largest number of entries in a code package.
        max_archive_entries: usize = "10000",
        /// Page size when a list request gives no `limit`.
        default_page_limit: i64 = "100",
        /// Largest `limit` a list request may ask for.
        max_page_limit: i64 = "1000",
        /// Seconds a looked-up function stays in the API's in-memory cache on the invocation path.
        function_cache_ttl: u64 = "2",
        /// Image name prefixes a function's own image (a custom image, admin-only by policy) may start with, e.g. `registry.example/fresco-fn/`; empty means no custom images.
        allowed_image_prefixes: Vec<String> = "",
        /// Bytes of finished sync executions the API may hold while it writes them to the database; beyond it sync invocations get 503 with Retry-After until the records are written.
        recorder_max_bytes: usize = "268435456",
        /// Milliseconds a grant may sit unused before this API returns it, so that its slots count against the project no longer.
        grant_idle_ms: u64 = "1000",
    }
}

config_section! {
    /// The PostgreSQL database holding every tenant-visible object and the async queue.
    pub struct DatabaseSection("database") {
        /// Database URL, e.g. postgresql://fresco:secret@127.0.0.1/fresco.
        #[secret]
        connection: String = "postgresql://fresco@127.0.0.1/fresco",
        /// Largest number of pooled connections per process.
        max_pool_size: u32 = "16",
        /// Seconds to wait for a pooled connection before answering 503.
        connection_timeout: u64 = "5",
    }
}

config_section! {
    /// How fresco-api validates Keystone tokens (the keystonemiddleware options).
    pub struct KeystoneAuthtokenSection("keystone_authtoken") {
        /// Keystone v3 endpoint the service authenticates against.
        auth_url: String = "http://127.0.0.1:5000/v3",
        /// Keystone URL announced to clients in `WWW-Authenticate`; empty means auth_url.
        www_authenticate_uri: String = "",
        /// The service user's name.
        username: String = "fresco",
        /// The service user's password.
        #[secret]
        password: String = "",
        /// Domain of the service user.
        user_domain_name: String = "Default",
        /// Project the service user's token is scoped to.
        project_name: String = "service",
        /// Domain of that project.
        project_domain_name: String = "Default",
        /// Seconds a validated token is trusted without asking Keystone again (never past its expiry).
        token_cache_time: u64 = "300",
        /// Seconds an invalid token is remembered as invalid.
        negative_cache_time: u64 = "10",
        /// Most tokens kept in the cache.
        cache_max_entries: usize = "10000",
        /// Seconds to wait for Keystone before answering 503.
        http_request_timeout: u64 = "5",
        /// Roles a service token must carry to be accepted as one.
        service_token_roles: Vec<String> = "service",
        /// PEM bundle of extra CAs trusted for Keystone's TLS certificate; empty means the built-in roots.
        cafile: String = "",
    }
}

config_section! {
    /// Where the operator's policy overrides live.
    pub struct OsloPolicySection("oslo_policy") {
        /// YAML file of rule overrides; a missing file means the defaults in code.
        policy_file: String = "/etc/fresco/policy.yaml",
    }
}

config_section! {
    /// Default per-project quotas; an admin may override any of them per project. -1 means unlimited.
    pub struct QuotaSection("quota") {
        /// Functions per project.
        functions: i64 = "100",
        /// Total bytes of stored code packages per project.
        code_bytes: i64 = "1073741824",
        /// Largest memory a function may ask for, in MB.
        memory_mb_max: i64 = "2048",
        /// Largest timeout a function may ask for, in seconds.
        timeout_s_max: i64 = "900",
        /// Executions running at once per project.
        concurrent_executions: i64 = "100",
        /// Executions started per minute per project.
        executions_per_minute: i64 = "60000",
        /// Async executions waiting in the queue per project; beyond it async invocations get 429.
        queued_executions: i64 = "10000",
        /// Triggers (cron, webhook) per project.
        triggers: i64 = "100",
        /// Pipelines per project.
        pipelines: i64 = "100",
    }
}

config_section! {
    /// Internal authentication between fresco-api, fresco-scheduler and the agents (see docs/security.md).
    pub struct InternalAuthSection("internal_auth") {
        /// Ed25519 private key (PEM) fresco-scheduler signs execution tickets with; only the scheduler reads it.
        ticket_signing_key_file: String = "/etc/fresco/ticket-signing.pem",
        /// Ed25519 public key (PEM) of the ticket key: agents verify tickets with it, the API code downloads.
        ticket_verify_key_file: String = "/etc/fresco/ticket-verify.pem",
        /// Seconds an execution ticket stays valid; agents refuse tickets living longer, so set the same value everywhere.
        ticket_ttl: u64 = "30",
        /// Ed25519 private key (PEM) fresco-api signs its calls to the scheduler with; only the API reads it.
        control_plane_key_file: String = "/etc/fresco/control-plane.pem",
        /// Ed25519 public key (PEM) of control_plane_key_file, with which the scheduler checks the API's calls.
        control_plane_verify_key_file: String = "/etc/fresco/control-plane-verify.pem",
        /// This agent's own Ed25519 private key (PEM); it signs its heartbeats and code downloads. Never shared.
        agent_key_file: String = "/etc/fresco/agent-key.pem",
        /// Directory of enrolled agents, one <agent_id>.pem each (url and public key), read by the scheduler and the API.
        agent_keys_dir: String = "/etc/fresco/agents",
    }
}

config_section! {
    /// TLS of internal traffic (scheduler, agents, and the API's agent-facing code download); see docs/security.md.
    pub struct InternalTlsSection("internal_tls") {
        /// Certificate chain (PEM) this service serves HTTPS with; empty means plain HTTP.
        cert_file: String = "",
        /// Private key (PEM) of cert_file.
        key_file: String = "",
        /// CA bundle (PEM) internal clients verify peers with; when set, internal calls must use https URLs.
        ca_file: String = "",
    }
}

config_section! {
    /// The scheduler service (fresco-scheduler).
    pub struct SchedulerSection("scheduler") {
        /// Address the scheduler listens on.
        bind_host: String = "127.0.0.1",
        /// Port the scheduler listens on.
        bind_port: u16 = "8901",
        /// URLs the API and agents reach the schedulers at; the active one answers, standbys answer 503.
        urls: Vec<String> = "http://127.0.0.1:8901",
        /// Seconds without a heartbeat after which an agent is marked down.
        agent_down_time: u64 = "10",
        /// Attempts an async execution gets (on different agents when one dies) before it fails.
        async_max_attempts: u32 = "3",
        /// Async executions dispatched at once by one scheduler.
        async_max_in_flight: usize = "64",
        /// Most queued executions the dispatcher claims in one transaction.
        async_batch_size: usize = "32",
        /// Milliseconds between polls of the async queue, the safety net beside LISTEN/NOTIFY.
        async_poll_interval_ms: u64 = "1000",
        /// Seconds a lease outlives its function's timeout plus the ticket lifetime before it expires on its own (also how long the dispatcher waits for an agent beyond the timeout).
        lease_grace: u64 = "30",
        /// Milliseconds between renewals of the active scheduler's leader lease, and between a standby's attempts to take it over.
        leader_check_interval_ms: u64 = "1000",
        /// Seconds a leader lease lasts without renewal: a scheduler that stops answering (paused, hung host) is replaced after this; also how long its database session may sit idle in a transaction.
        leader_lease_time: u64 = "5",
        /// Least milliseconds between two writes of one agent's heartbeat to the database; state changes are written at once.
        agent_persist_interval_ms: u64 = "1000",
        /// Worker threads serving HTTP; 0 means one per CPU core.
        workers: usize = "0",
        /// Milliseconds between reads of new warm-container retirements (deleted or changed functions) from the database.
        retirement_poll_interval_ms: u64 = "500",
        /// Seconds (at least 60) a retirement is kept for agents that have not received it; an agent that misses more retires all its idle warm containers.
        retirement_retention: u64 = "3600",
        /// Bytes of async results the dispatcher may hold before they are written; beyond it no more queued work is claimed until they are.
        finish_max_bytes: usize = "268435456",
        /// Milliseconds a grant (the right of an API replica to run one function on one agent without asking again) lasts; a dead replica's grants come back after this plus the function's timeout.
        grant_ttl_ms: u64 = "10000",
        /// Most invocations one grant lets its holder run at once (never more than the project's concurrency headroom).
        grant_max_slots: u32 = "16",
        /// Milliseconds between two passes of the active scheduler over the due ticks of cron triggers.
        cron_interval_ms: u64 = "250",
        /// Most cron triggers fired in one transaction (a pass goes on while batches are full).
        cron_batch_size: i64 = "500",
    }
}

config_section! {
    /// OpenStack notifications (oslo.messaging, RabbitMQ) that fire notification triggers; consumed by the active scheduler.
    pub struct NotificationsSection("notifications") {
        /// AMQP URL of the RabbitMQ the cloud's services notify on (rabbit://user:password@host:5672/vhost); empty disables the consumer.
        transport_url: String = "",
        /// Exchanges the services publish their notifications on (oslo's control_exchange of each service).
        exchanges: Vec<String> = "nova,cinder,neutron,glance,keystone,openstack",
        /// Notification topics (oslo's [oslo_messaging_notifications] topics); every priority of each is consumed.
        topics: Vec<String> = "notifications",
        /// Durable queue of Fresco's own that the consumer binds to every exchange and topic (never a queue another consumer reads).
        queue: String = "fresco-notifications",
        /// Most notifications delivered to the consumer and not yet acknowledged (also the largest batch queued in one transaction).
        prefetch: u16 = "64",
        /// Seconds between attempts to reconnect to RabbitMQ after a failure.
        reconnect_interval: u64 = "2",
    }
}

config_section! {
    /// How long execution records are kept; purged by the active scheduler, which also deletes code packages nothing needs any more.
    pub struct RetentionSection("retention") {
        /// Days a finished execution's record is kept; 0 keeps records forever.
        execution_days: u64 = "30",
        /// Days a finished execution's result, logs and input are kept (the record itself stays until execution_days); 0 keeps them with the record.
        body_days: u64 = "7",
        /// Seconds between two purges of old records and unused code packages.
        purge_interval: u64 = "300",
        /// Most rows one purge statement deletes or changes, so that no purge holds locks for long.
        purge_batch: u32 = "1000",
    }
}

config_section! {
    /// The compute agent (fresco-agent), one per compute node.
    pub struct AgentSection("agent") {
        /// Address the agent listens on for execution tickets.
        bind_host: String = "127.0.0.1",
        /// Port the agent listens on.
        bind_port: u16 = "8902",
        /// URL the control plane reaches this agent at; empty means http://bind_host:bind_port.
        advertise_url: String = "",
        /// Identifier of this agent; empty means the [DEFAULT] host.
        agent_id: String = "",
        /// URL of the API, for code downloads.
        api_url: String = "http://127.0.0.1:8900",
        /// Docker engine socket.
        docker_host: String = "unix:///var/run/docker.sock",
        /// Memory in MB this agent offers to functions; 0 means 80% of the machine's memory.
        memory_mb: u64 = "0",
        /// Seconds between heartbeats.
        heartbeat_interval: u64 = "2",
        /// Seconds a warm container may sit idle before it is removed.
        idle_timeout: u64 = "300",
        /// Path of the static Lambda Runtime API shim bind-mounted into containers.
        shim_path: String = "/usr/libexec/fresco/fresco-shim",
        /// First uid of the range sandboxes run as: each container gets its own uid (and gid) from the range, which must map to no user of the host.
        sandbox_uid_base: u32 = "200000",
        /// Number of uids in the sandbox range (at least the most containers the agent runs at once).
        sandbox_uid_count: u32 = "65536",
        /// Most processes a function may run.
        pids_limit: i64 = "64",
        /// Size of the writable /tmp in MB.
        tmpfs_mb: u64 = "64",
        /// Bytes of a function's stdout/stderr kept per execution.
        log_max_bytes: usize = "65536",
        /// Longest wait in milliseconds, after a runtime reports an init error, for it to stop so its last output is kept.
        log_sync_timeout_ms: u64 = "100",
        /// Largest code package downloaded from the API, in bytes.
        code_max_bytes: usize = "52428800",
        /// Largest total unpacked size of a code package on the node, in bytes.
        code_max_unpacked_bytes: u64 = "262144000",
        /// Largest number of entries in a code package on the node.
        code_max_entries: usize = "10000",
        /// Most bytes of disk the unpacked code packages of this node may take; the least recently used packages that no running or warm container holds are removed first.
        code_cache_max_bytes: u64 = "10737418240",
        /// User id code packages are unpacked as (in a child process that drops root first); never 0, never in the sandbox uid range: the files stay readable, not writable, by function containers.
        unpack_uid: u32 = "199999",
        /// Group id code packages are unpacked as; never 0.
        unpack_gid: u32 = "199999",
        /// Seconds a new container may take to start before the run fails.
        start_timeout: u64 = "30",
        /// Most concurrent invocations this agent serves; further run requests get 503.
        max_running: u32 = "256",
        /// Memory in MB that buys one full CPU: a sandbox's hard CPU limit (CFS quota) is its memory divided by this, as Lambda sizes vCPUs.
        memory_mb_per_cpu: u64 = "1769",
        /// Least hard CPU limit of a sandbox, in thousandths of a CPU, whatever its memory.
        cpu_min_millicores: u64 = "250",
        /// Most files a sandbox process may hold open (RLIMIT_NOFILE).
        nofile_limit: u64 = "1024",
        /// Most processes and threads a sandbox's uid may run (RLIMIT_NPROC; each sandbox has its own uid).
        nproc_limit: u64 = "64",
        /// Milliseconds an idle sandbox may take to freeze (cgroup freezer) before it is destroyed instead.
        freeze_timeout_ms: u64 = "1000",
        /// Milliseconds a sandbox stays idle before it is frozen (back-to-back invocations within it pay no freeze and thaw).
        freeze_delay_ms: u64 = "50",
        /// Bytes of stdout/stderr one invocation may write before its container is killed and the invocation fails (the first log_max_bytes are kept).
        output_max_bytes: u64 = "10485760",
        /// Bytes of stdout/stderr one container may write over its lifetime before it is killed.
        container_output_max_bytes: u64 = "104857600",
        /// Network (IPv4 CIDR) the addresses of network-enabled sandboxes come from, one /32 each; never routed beyond this node.
        sandbox_network_cidr: String = "198.18.0.0/16",
        /// Destinations network-enabled sandboxes may not reach (IPv4 CIDRs); the node's own addresses and other sandboxes are always refused.
        sandbox_denied_networks: Vec<String> = "0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24, 192.168.0.0/16, 198.18.0.0/15, 224.0.0.0/3",
        /// Exceptions to sandbox_denied_networks that network-enabled sandboxes may reach (e.g. a resolver on a private network).
        sandbox_allowed_networks: Vec<String> = "",
        /// Most execution tickets remembered until they expire, so that none is used twice; when full, new runs get 503.
        replay_cache_entries: usize = "1000000",
        /// Image name prefixes this node runs as a function's own image (runtime images come from the control plane); empty means none.
        allowed_image_prefixes: Vec<String> = "",
        /// Runtimes this agent keeps pre-warmed sandboxes of, as kind=image (kind python or provided), e.g. python=fresco/python3:1; empty means no pre-warmed sandboxes.
        prewarm_runtimes: Vec<String> = "",
        /// Pre-warmed sandboxes kept ready per runtime and memory size (each holds its memory size of the node's capacity; an idle Python one uses about 10 MB).
        prewarm_size: u32 = "2",
        /// Most pre-warmed sandboxes kept per runtime and memory size: the pool grows by the first invocations of the last prewarm_window seconds, up to this.
        prewarm_max: u32 = "8",
        /// Seconds of first invocations that size the pool beyond prewarm_size.
        prewarm_window: u64 = "30",
        /// Memory sizes (MB) pre-warmed sandboxes are kept for: a sandbox is started with the limits of its size, so only functions of a listed size use one.
        prewarm_memory_mb: Vec<String> = "128",
        /// Pre-warmed sandboxes started at once while refilling the pools.
        prewarm_fill_concurrency: u32 = "2",
    }
}

config_section! {
    /// Parallel testing through aliases: the copies of invocations an alias's shadow version gets, and the comparisons kept (read by the API, which writes the bounds into each copy).
    pub struct ShadowSection("shadow") {
        /// Differing pairs an alias's comparison keeps (the newest); 0 keeps none, counts only.
        sample_size: u32 = "10",
        /// Bytes of each text (event, primary result, shadow result) a kept pair holds; longer texts are cut and the pair marked truncated.
        sample_max_bytes: u32 = "2048",
        /// Bytes of shadow copies an API process holds before it queues them; beyond it a copy is skipped (and counted as skipped), never the caller delayed.
        queue_max_bytes: usize = "67108864",
    }
}

/// Every section, in the order of the sample config.
pub const ALL_SECTIONS: &[SectionDoc] = &[
    doc::<DefaultSection>(),
    doc::<ApiSection>(),
    doc::<DatabaseSection>(),
    doc::<KeystoneAuthtokenSection>(),
    doc::<OsloPolicySection>(),
    doc::<QuotaSection>(),
    doc::<InternalAuthSection>(),
    doc::<InternalTlsSection>(),
    doc::<SchedulerSection>(),
    doc::<RetentionSection>(),
    doc::<NotificationsSection>(),
    doc::<ShadowSection>(),
    doc::<AgentSection>(),
];

const fn doc<S: super::Section>() -> SectionDoc {
    SectionDoc {
        name: S::NAME,
        help: S::HELP,
        options: S::options,
    }
}
