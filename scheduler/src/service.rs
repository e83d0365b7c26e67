//! Wires the scheduler together: keys, database, placement, the HTTP server, the heartbeat
//! writer, the sweeper, and the leadership loop that runs the dispatcher while this scheduler
//! holds the leader lease (see `leader`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use fresco_common::conf::{ConfigError, NotificationsSection, RetentionSection};

use crate::cron::{CronConfig, CronStats};
use crate::notifications::NotificationStats;
use fresco_common::enrolment::AgentRegistry;
use fresco_common::ticket::{ControlPlaneVerifier, TicketError, TicketSigner};
use fresco_common::tls::{InternalTls, TlsError};
use fresco_common::wire::Heartbeat;
use tokio::sync::{mpsc, watch};

use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::http::{self, AppState};
use crate::leader::{Leadership, LeaseConfig, LeaseConnection};
use crate::placement::{Placer, PlacerConfig};
use crate::retirements::RetirementLog;
use crate::settings::Settings;
use fresco_store::queue::{Limits, StorageError, Store};

/// How often agents and leases are checked for expiry.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Pause before a leader retries a renewal that failed for want of the database.
const RETRY_RENEWAL: Duration = Duration::from_millis(100);
/// How often the active scheduler deletes retirements older than the retention.
const RETIREMENT_PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// Most retirements read in one poll.
const RETIREMENT_BATCH: i64 = 10_000;

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
    #[error("{0}")]
    Client(#[from] fresco_common::agent_client::AgentClientError),
}

/// A started scheduler.
pub struct Scheduler {
    addrs: Vec<SocketAddr>,
    server: actix_web::dev::Server,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    leadership: Arc<Leadership>,
    lease: LeaseConfig,
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
        let lease = LeaseConfig {
            database_url: db.connection.clone(),
            lease: Duration::from_secs(s.leader_lease_time.max(1)),
            interval: Duration::from_millis(s.leader_check_interval_ms.max(10)),
        };
        let store = Store::connect(
            &db.connection,
            db.max_pool_size,
            Duration::from_secs(db.connection_timeout),
            lease.lease,
        )?
        .with_allowed_image_prefixes(settings.api.allowed_image_prefixes.clone());
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
        let leadership = Arc::new(Leadership::new(&format!(
            "{}:{}/{}",
            if settings.default.host.is_empty() {
                s.bind_host.as_str()
            } else {
                settings.default.host.as_str()
            },
            s.bind_port,
            uuid::Uuid::new_v4().simple()
        )));
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
                finish_max_bytes: s.finish_max_bytes.max(1),
            },
            store.clone(),
            placer.clone(),
            signer.clone(),
            leadership.clone(),
            &tls,
        )?;
        let (persist, persist_rx) = mpsc::channel::<Heartbeat>(4096);
        let cron_stats = Arc::new(CronStats::default());
        let notification_stats = Arc::new(NotificationStats::default());
        let retirements = Arc::new(Mutex::new(RetirementLog::new()));

        let state = web::Data::new(AppState {
            placer: placer.clone(),
            signer,
            control_plane,
            agents,
            leadership: leadership.clone(),
            persist,
            dispatcher: dispatcher.clone(),
            store: store.clone(),
            verified: Mutex::new(HashMap::new()),
            retirements: retirements.clone(),
            grants: http::GrantSettings {
                ttl: Duration::from_millis(s.grant_ttl_ms.max(1)),
                max_slots: s.grant_max_slots.max(1),
            },
            counters: http::Counters::default(),
            cron: cron_stats.clone(),
            notifications: notification_stats.clone(),
            metrics: crate::metrics::Metrics::new(),
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
            tokio::spawn(follow_retirements(
                store.clone(),
                retirements,
                placer.clone(),
                RetirementTimings {
                    poll: Duration::from_millis(s.retirement_poll_interval_ms.max(10)),
                    retention: Duration::from_secs(s.retirement_retention.max(60)),
                },
                leadership.clone(),
            )),
            tokio::spawn(persist_heartbeats(store.clone(), persist_rx)),
            tokio::spawn(sweep(
                placer,
                store.clone(),
                dispatcher.clone(),
                leadership.clone(),
            )),
            tokio::spawn(lead(
                lease.clone(),
                leadership.clone(),
                dispatcher,
                store,
                settings.retention.clone(),
                EventSources {
                    cron: CronConfig {
                        interval: Duration::from_millis(s.cron_interval_ms.max(10)),
                        batch_size: s.cron_batch_size.max(1),
                    },
                    cron_stats,
                    notifications: notifications_config(&settings.notifications),
                    notification_stats,
                },
            )),
        ];
        Ok(Self {
            addrs,
            server,
            tasks,
            leadership,
            lease,
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
        resign(&self.lease, &self.leadership).await;
        result
    }

    /// A handle that stops the HTTP server (and so `serve`).
    pub fn stop_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// What turns events into async executions while this scheduler leads.
struct EventSources {
    cron: CronConfig,
    cron_stats: Arc<CronStats>,
    /// `None`: `[notifications] transport_url` is empty, the consumer is off.
    notifications: Option<NotificationsSection>,
    notification_stats: Arc<NotificationStats>,
}

fn notifications_config(section: &NotificationsSection) -> Option<NotificationsSection> {
    if section.transport_url.trim().is_empty() {
        log::info!("[notifications] transport_url is empty: no notification consumer");
        return None;
    }
    log::info!(
        "notification consumer on {} (while this scheduler leads)",
        crate::notifications::redacted(&section.transport_url)
    );
    Some(section.clone())
}

/// Takes, renews or waits for the leader lease; runs the dispatcher, the retention purge, the
/// cron pass and the notification consumer while this scheduler leads.
async fn lead(
    config: LeaseConfig,
    leadership: Arc<Leadership>,
    dispatcher: Dispatcher,
    store: Store,
    retention: RetentionSection,
    events: EventSources,
) {
    let holder = leadership.holder().to_owned();
    let mut connection: Option<LeaseConnection> = None;
    let mut running: Option<(watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)> = None;
    let mut pause = Duration::ZERO;
    loop {
        tokio::time::sleep(pause).await;
        pause = config.interval;
        if connection.as_ref().is_none_or(|c| !c.is_alive()) {
            connection = match LeaseConnection::open(&config).await {
                Ok(c) => Some(c),
                Err(e) => {
                    log::warn!("cannot open the leader lease connection: {e}");
                    None
                }
            };
        }
        let sent = Instant::now();
        // `Some(true)`: leads; `Some(false)`: does not; `None`: cannot tell (database trouble).
        let leads = match (&connection, leadership.epoch(), running.is_some()) {
            (None, _, _) => None,
            (Some(c), Some(epoch), true) => match c.renew(&holder, epoch, &config).await {
                Ok(renewed) => {
                    if renewed {
                        leadership.lead(epoch, config.valid_until(sent));
                    } else {
                        log::warn!("leader lease of epoch {epoch} was taken over or expired");
                    }
                    Some(renewed)
                }
                Err(e) => {
                    log::warn!("cannot renew the leader lease: {e}");
                    connection = None;
                    None
                }
            },
            (Some(c), _, _) => match c.try_acquire(&holder, &config).await {
                Ok(Some(epoch)) => {
                    leadership.lead(epoch, config.valid_until(sent));
                    log::info!("took the leader lease (epoch {epoch}): this scheduler is active");
                    Some(true)
                }
                Ok(None) => Some(false),
                Err(e) => {
                    log::warn!("cannot take the leader lease: {e}");
                    connection = None;
                    None
                }
            },
        };
        // Without an answer the term lasts as long as the local clock says it does, and the
        // leader tries again at once (e.g. the database restarted: it must renew before a
        // standby sees its old session gone).
        if leads.is_none() && running.is_some() {
            pause = RETRY_RENEWAL;
        }
        let leads = leads.unwrap_or_else(|| leadership.is_active()) && leadership.is_active();
        match (leads, running.is_some()) {
            (true, false) => {
                let (stop, stopped) = watch::channel(false);
                let purging = tokio::spawn(crate::retention::run(
                    store.clone(),
                    retention.clone(),
                    leadership.clone(),
                    stopped.clone(),
                ));
                let firing = tokio::spawn(crate::cron::run(
                    store.clone(),
                    events.cron,
                    leadership.clone(),
                    events.cron_stats.clone(),
                    stopped.clone(),
                ));
                let consuming = events.notifications.clone().map(|config| {
                    tokio::spawn(crate::notifications::run(
                        store.clone(),
                        config,
                        leadership.clone(),
                        events.notification_stats.clone(),
                        stopped.clone(),
                    ))
                });
                let dispatching = tokio::spawn({
                    let dispatcher = dispatcher.clone();
                    async move { dispatcher.run(stopped).await }
                });
                let mut tasks = vec![dispatching, purging, firing];
                tasks.extend(consuming);
                running = Some((stop, tasks));
            }
            (false, true) => {
                log::warn!("lost the leader lease: standing by");
                leadership.stand_by();
                if let Some((stop, tasks)) = running.take() {
                    let _ = stop.send(true);
                    for task in tasks {
                        if let Err(e) = task.await {
                            log::error!("leader task failed: {e}");
                        }
                    }
                }
            }
            (false, false) => leadership.stand_by(),
            (true, true) => {}
        }
    }
}

/// Gives the lease up at shutdown so that a standby takes over at once.
async fn resign(config: &LeaseConfig, leadership: &Leadership) {
    let Some(fence) = leadership.fence() else {
        return;
    };
    leadership.stand_by();
    match LeaseConnection::open(config).await {
        Ok(c) => match c.resign(&fence.holder, fence.epoch).await {
            Ok(true) => log::info!("gave up the leader lease (epoch {})", fence.epoch),
            Ok(false) => {}
            Err(e) => log::warn!("cannot give up the leader lease: {e}"),
        },
        Err(e) => log::warn!("cannot give up the leader lease: {e}"),
    }
}

/// Marks silent agents down (in memory, in the table, and for the dispatcher) and ends
/// expired leases.
async fn sweep(
    placer: Arc<Placer>,
    store: Store,
    dispatcher: Dispatcher,
    leadership: Arc<Leadership>,
) {
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
        // Only the leader acts on it: a standby (or a leader just woken from a pause) has
        // not heard heartbeats that the leader did.
        let Some(fence) = leadership.fence() else {
            continue;
        };
        dispatcher.agents_down(&down);
        let ids: Vec<String> = down.iter().map(|a| a.to_string()).collect();
        let store = store.clone();
        let written =
            tokio::task::spawn_blocking(move || store.mark_agents_down(&fence, &ids)).await;
        if let Ok(Err(e)) = written {
            log::warn!("cannot mark agents down: {e}");
        }
    }
}

/// How the retirement log is followed (`[scheduler] retirement_*`).
#[derive(Debug, Clone, Copy)]
struct RetirementTimings {
    poll: Duration,
    retention: Duration,
}

/// Follows the retirement log: loads it whole, then reads what follows every poll interval,
/// tells placement at once (no warm affinity for retired versions), drops entries past the
/// retention, and (while active) purges those rows from the table.
async fn follow_retirements(
    store: Store,
    log: Arc<Mutex<RetirementLog>>,
    placer: Arc<Placer>,
    timings: RetirementTimings,
    leadership: Arc<Leadership>,
) {
    // The log is consistent between statements, so a panic elsewhere leaves it usable.
    let locked = || {
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let retention =
        chrono::Duration::from_std(timings.retention).unwrap_or_else(|_| chrono::Duration::days(1));
    let mut ticker = tokio::time::interval(timings.poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge: Option<Instant> = None;
    loop {
        ticker.tick().await;
        let latest = locked().latest();
        let reader = store.clone();
        let read = tokio::task::spawn_blocking(move || match latest {
            None => reader
                .load_retirements()
                .map(|(rows, floor)| (rows, Some(floor))),
            Some(seq) => reader
                .retirements_after(seq, RETIREMENT_BATCH)
                .map(|rows| (rows, None)),
        })
        .await;
        match read {
            Ok(Ok((rows, Some(floor)))) => {
                let count = rows.len();
                locked().load(rows, floor);
                log::info!("retirement log loaded: {count} entries");
            }
            Ok(Ok((rows, None))) => {
                let added = locked().append(rows);
                if !added.is_empty() {
                    let agents = placer.retire(&added);
                    log::info!(
                        "{} retirement(s) up to seq {}: warm pools dropped on {agents} agent(s)",
                        added.len(),
                        added.last().map_or(0, |k| k.seq)
                    );
                }
            }
            Ok(Err(e)) => log::warn!("cannot read the retirement log: {e}"),
            Err(e) => log::warn!("retirement log task failed: {e}"),
        }
        locked().prune(chrono::Utc::now() - retention);
        let fence = leadership.fence();
        if let Some(fence) =
            fence.filter(|_| last_purge.is_none_or(|at| at.elapsed() >= RETIREMENT_PURGE_INTERVAL))
        {
            last_purge = Some(Instant::now());
            let purger = store.clone();
            let purged = tokio::task::spawn_blocking(move || {
                purger.purge_retirements(&fence, timings.retention)
            })
            .await;
            match purged {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => log::info!("purged {n} retirement(s) past the retention"),
                Ok(Err(e)) => log::warn!("cannot purge old retirements: {e}"),
                Err(e) => log::warn!("retirement purge task failed: {e}"),
            }
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
