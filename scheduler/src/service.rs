//! Wires the scheduler together: keys, database, placement, the HTTP server, the heartbeat
//! writer, the sweeper, and the leadership loop that runs the dispatcher while this scheduler
//! holds the advisory lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use fresco_common::conf::ConfigError;
use fresco_common::enrolment::AgentRegistry;
use fresco_common::ticket::{ControlPlaneVerifier, TicketError, TicketSigner};
use fresco_common::tls::{InternalTls, TlsError};
use fresco_common::wire::Heartbeat;
use tokio::sync::{mpsc, watch};

use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::http::{self, AppState};
use crate::leader::LeaderLock;
use crate::placement::{Placer, PlacerConfig};
use crate::settings::Settings;
use crate::storage::{Limits, StorageError, Store};

/// How often agents and leases are checked for expiry.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Key(#[from] TicketError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("http server failed: {0}")]
    Server(std::io::Error),
    #[error("cannot build the agent http client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A started scheduler.
pub struct Scheduler {
    addrs: Vec<SocketAddr>,
    server: actix_web::dev::Server,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Scheduler {
    /// Starts everything; the scheduler stands by until it takes the leader lock.
    pub async fn start(settings: Settings) -> Result<Self, ServiceError> {
        let s = &settings.scheduler;
        let auth = &settings.internal_auth;
        let signer = Arc::new(TicketSigner::from_file(
            &auth.ticket_signing_key_file,
            auth.ticket_ttl,
        )?);
        let control_plane = Arc::new(ControlPlaneVerifier::from_file(
            &auth.control_plane_verify_key_file,
        )?);
        let agents = Arc::new(AgentRegistry::new(&auth.agent_keys_dir));
        if !agents.dir().is_dir() {
            log::warn!(
                "[internal_auth] agent_keys_dir {} is not a directory: no agent is enrolled",
                auth.agent_keys_dir
            );
        }
        let tls = InternalTls::from_section(&settings.internal_tls)?;
        let db = &settings.database;
        let store = Store::connect(
            &db.connection,
            db.max_pool_size,
            Duration::from_secs(db.connection_timeout),
        )?;
        {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.ping())
                .await
                .map_err(|e| ServiceError::Server(std::io::Error::other(e)))??;
        }

        let placer = Arc::new(Placer::new(PlacerConfig {
            agent_down_after: Duration::from_secs(s.agent_down_time),
            persist_interval: Duration::from_millis(s.agent_persist_interval_ms),
            lease_extra: Duration::from_secs(auth.ticket_ttl + s.lease_grace),
        }));
        let dispatcher = Dispatcher::new(
            DispatchConfig {
                database_url: db.connection.clone(),
                max_in_flight: s.async_max_in_flight.max(1),
                batch_size: s.async_batch_size.max(1),
                poll_interval: Duration::from_millis(s.async_poll_interval_ms.max(10)),
                max_attempts: i32::try_from(s.async_max_attempts.max(1)).unwrap_or(i32::MAX),
                lease_grace: Duration::from_secs(s.lease_grace),
                ticket_ttl: Duration::from_secs(auth.ticket_ttl),
                agent_down_time: Duration::from_secs(s.agent_down_time),
                defaults: Limits {
                    concurrent: settings.quota.concurrent_executions,
                    per_minute: settings.quota.executions_per_minute,
                },
            },
            store.clone(),
            placer.clone(),
            signer.clone(),
            &tls,
        )?;
        let active = Arc::new(AtomicBool::new(false));
        let (persist, persist_rx) = mpsc::channel::<Heartbeat>(4096);

        let state = web::Data::new(AppState {
            placer: placer.clone(),
            signer,
            control_plane,
            agents,
            active: active.clone(),
            persist,
            dispatcher: dispatcher.clone(),
            store: store.clone(),
            verified: Mutex::new(HashMap::new()),
        });
        let addr = format!("{}:{}", s.bind_host, s.bind_port);
        let mut server =
            HttpServer::new(move || App::new().app_data(state.clone()).configure(http::routes))
                .disable_signals()
                .shutdown_timeout(2);
        if s.workers > 0 {
            server = server.workers(s.workers);
        }
        let bound = match tls.server_config() {
            Some(config) => server.bind_rustls_0_23(&addr, config),
            None => server.bind(&addr),
        };
        let server = bound.map_err(|source| ServiceError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let addrs = server.addrs();
        let server = server.run();
        log::info!(
            "fresco-scheduler listening on {addrs:?} ({}), standing by",
            tls.scheme()
        );

        let tasks = vec![
            tokio::spawn(persist_heartbeats(store.clone(), persist_rx)),
            tokio::spawn(sweep(placer, store, dispatcher.clone(), active.clone())),
            tokio::spawn(lead(
                db.connection.clone(),
                Duration::from_millis(s.leader_check_interval_ms.max(10)),
                active,
                dispatcher,
            )),
        ];
        Ok(Self {
            addrs,
            server,
            tasks,
        })
    }

    /// The addresses the HTTP server listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Serves until the HTTP server stops (see [`Scheduler::stop_handle`]).
    pub async fn serve(self) -> Result<(), ServiceError> {
        let result = self.server.await.map_err(ServiceError::Server);
        for task in &self.tasks {
            task.abort();
        }
        result
    }

    /// A handle that stops the HTTP server (and so `serve`).
    pub fn stop_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// Holds or waits for the leader lock; runs the dispatcher while holding it.
async fn lead(url: String, interval: Duration, active: Arc<AtomicBool>, dispatcher: Dispatcher) {
    loop {
        match LeaderLock::try_acquire(&url).await {
            Ok(Some(lock)) => {
                log::info!("took the leader lock: this scheduler is active");
                active.store(true, Ordering::SeqCst);
                let (stop, stopped) = watch::channel(false);
                let running = tokio::spawn({
                    let dispatcher = dispatcher.clone();
                    async move { dispatcher.run(stopped).await }
                });
                loop {
                    tokio::time::sleep(interval).await;
                    if !lock.still_held().await {
                        break;
                    }
                }
                log::warn!("lost the leader lock: standing by");
                active.store(false, Ordering::SeqCst);
                let _ = stop.send(true);
                if let Err(e) = running.await {
                    log::error!("dispatcher task failed: {e}");
                }
                drop(lock);
            }
            Ok(None) => log::debug!("another scheduler is active"),
            Err(e) => log::warn!("cannot take the leader lock: {e}"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Marks silent agents down (in memory, in the table, and for the dispatcher) and ends
/// expired leases.
async fn sweep(placer: Arc<Placer>, store: Store, dispatcher: Dispatcher, active: Arc<AtomicBool>) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (down, expired) = placer.sweep(Instant::now());
        for lease in &expired {
            log::warn!(
                "lease {} on agent {} expired",
                lease.lease_id,
                lease.agent_id
            );
        }
        if down.is_empty() {
            continue;
        }
        log::warn!("agents stopped reporting: {down:?}");
        if active.load(Ordering::SeqCst) {
            dispatcher.agents_down(&down);
        }
        let ids: Vec<String> = down.iter().map(|a| a.to_string()).collect();
        let store = store.clone();
        let written = tokio::task::spawn_blocking(move || store.mark_agents_down(&ids)).await;
        if let Ok(Err(e)) = written {
            log::warn!("cannot mark agents down: {e}");
        }
    }
}

/// Writes heartbeats to the `agents` table, the latest one per agent.
async fn persist_heartbeats(store: Store, mut receiver: mpsc::Receiver<Heartbeat>) {
    while let Some(first) = receiver.recv().await {
        let mut latest: HashMap<String, Heartbeat> = HashMap::new();
        latest.insert(first.agent_id.clone(), first);
        while let Ok(next) = receiver.try_recv() {
            latest.insert(next.agent_id.clone(), next);
        }
        let store = store.clone();
        let written = tokio::task::spawn_blocking(move || {
            for heartbeat in latest.values() {
                store.upsert_agent(heartbeat)?;
            }
            Ok::<_, StorageError>(())
        })
        .await;
        if let Ok(Err(e)) = written {
            log::warn!("cannot persist heartbeats: {e}");
        }
    }
}
