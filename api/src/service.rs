//! Building the service from its configuration.

use std::sync::Arc;
use std::time::Duration;

use fresco_auth::policy::Enforcer;
use fresco_auth::Authenticator;
use fresco_common::agent_client::AgentClient;
use fresco_common::conf::{
    ApiSection, ConfigError, DatabaseSection, DefaultSection, InternalAuthSection,
    InternalTlsSection, QuotaSection, RawConfig, SchedulerSection, ShadowSection,
};
use fresco_common::enrolment::AgentRegistry;
use fresco_common::scheduler_client::SchedulerClient;
use fresco_common::ticket::{ControlPlaneSigner, TicketVerifier};
use fresco_common::tls::InternalTls;

use crate::grants::GrantPool;
use crate::http::AppState;
use crate::invoke::{Invoker, Recorder};
use fresco_store as db;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Auth(#[from] fresco_auth::AuthError),
    #[error("{0}")]
    Policy(#[from] fresco_auth::policy::PolicyError),
    #[error("{0}")]
    Tickets(#[from] fresco_common::ticket::TicketError),
    #[error("{0}")]
    Scheduler(#[from] fresco_common::scheduler_client::SchedulerError),
    #[error("{0}")]
    Invoker(String),
    #[error("{0}")]
    Tls(#[from] fresco_common::tls::TlsError),
}

/// The typed sections fresco-api reads.
pub struct ApiConfig {
    pub default: DefaultSection,
    pub api: ApiSection,
    pub database: DatabaseSection,
    pub quota: QuotaSection,
    pub internal_auth: InternalAuthSection,
    pub internal_tls: InternalTlsSection,
    pub scheduler: SchedulerSection,
    pub shadow: ShadowSection,
}

impl ApiConfig {
    pub fn from_raw(raw: &RawConfig) -> Result<Self, ConfigError> {
        Ok(ApiConfig {
            default: raw.section()?,
            api: raw.section()?,
            database: raw.section()?,
            quota: raw.section()?,
            internal_auth: raw.section()?,
            internal_tls: raw.section()?,
            scheduler: raw.section()?,
            shadow: raw.section()?,
        })
    }

    /// The URL clients reach this API at.
    pub fn base_url(&self) -> String {
        if self.api.public_url.is_empty() {
            let scheme = if self.internal_tls.cert_file.is_empty() {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{}:{}", self.api.bind_host, self.api.bind_port)
        } else {
            self.api.public_url.trim_end_matches('/').to_owned()
        }
    }
}

/// Builds the shared state. Connects to nothing yet: the pool connects lazily so the API can
/// start (and answer 503) while PostgreSQL is down.
pub fn build_state(raw: &RawConfig) -> Result<AppState, StartupError> {
    let config = ApiConfig::from_raw(raw)?;
    let auth = Authenticator::from_config(raw)?;
    if config.default.auth_strategy == "noauth" {
        log::warn!(
            "auth_strategy = noauth: EVERY REQUEST IS TRUSTED AS THE USER AND PROJECT IT NAMES. \
             This is for development only; never run it reachable by anyone else"
        );
    }
    let policy = Enforcer::from_config(raw)?;
    let tickets = match TicketVerifier::from_file(&config.internal_auth.ticket_verify_key_file) {
        Ok(verifier) => Some(verifier),
        Err(error) => {
            log::warn!("agents cannot download code until this is fixed: {error}");
            None
        }
    };
    let pool = db::pool(
        &config.database.connection,
        config.database.max_pool_size,
        Duration::from_secs(config.database.connection_timeout),
    );
    let tls = InternalTls::from_section(&config.internal_tls)?;
    let invoker = match ControlPlaneSigner::from_file(
        &config.internal_auth.control_plane_key_file,
        "fresco-api",
    ) {
        Ok(signer) => {
            let scheduler = SchedulerClient::for_control_plane(
                &config.scheduler.urls,
                Arc::new(signer),
                tls.clone(),
            )?;
            let recorder = Recorder::start(pool.clone(), config.api.recorder_max_bytes);
            // An agent's answer is awaited as long as the dispatcher awaits it.
            let agents = AgentClient::new(&tls, Duration::from_secs(config.scheduler.lease_grace))
                .map_err(|e| StartupError::Invoker(e.to_string()))?;
            Some(Invoker::new(
                scheduler,
                recorder,
                Duration::from_secs(config.api.function_cache_ttl),
                agents,
                GrantPool::new(
                    Duration::from_millis(config.api.grant_idle_ms),
                    config.scheduler.grant_max_slots,
                ),
                Duration::from_millis(config.api.grant_idle_ms),
            ))
        }
        Err(error) => {
            log::warn!("invocations are disabled until this is fixed: {error}");
            None
        }
    };
    let shadows = invoker.as_ref().map(|invoker| {
        crate::shadow::ShadowQueue::start(
            pool.clone(),
            std::sync::Arc::clone(&invoker.queue_gauge),
            &config.shadow,
        )
    });
    Ok(AppState {
        shadows,
        invoker,
        pool,
        base_url: config.base_url(),
        agent_down_after: chrono::Duration::seconds(
            i64::try_from(config.scheduler.agent_down_time).unwrap_or(i64::MAX / 1000),
        ),
        api: config.api,
        quota: config.quota,
        auth,
        policy,
        tickets,
        agents: AgentRegistry::new(&config.internal_auth.agent_keys_dir),
        metrics: crate::metrics::Metrics::new(),
    })
}
