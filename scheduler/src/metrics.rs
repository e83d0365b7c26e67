//! Prometheus metrics of the scheduler at `GET /metrics` (text format): placements and grants,
//! the async queue (depth and the age of its oldest execution, read from the database at each
//! scrape), the dispatcher's outcomes, cron ticks, notifications consumed, leadership and each agent's capacity.
//! Labels name agents and outcomes only: no project, function or tenant data.
//!
//! Counters kept elsewhere as atomics (`http::Counters`, `dispatch::Stats`, `cron::CronStats`)
//! are copied into the registry's counters at each scrape (they only grow).

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::cron::CronStats;
use crate::http::AppState;

/// The scheduler's registry and its metrics.
pub struct Metrics {
    registry: Registry,
    placements: IntCounter,
    releases: IntCounter,
    grants: IntCounter,
    grant_returns: IntCounter,
    async_outcomes: IntCounterVec,
    async_in_flight: IntGauge,
    cron_ticks: IntCounterVec,
    cron_passes: IntCounter,
    cron_pass_micros: IntCounter,
    notifications: IntCounterVec,
    notification_executions: IntCounter,
    notification_batches: IntCounter,
    leader: IntGauge,
    agents_up: IntGauge,
    agent_free_mb: IntGaugeVec,
    agent_leases: IntGaugeVec,
    queue_depth: IntGauge,
    queue_oldest_age: IntGauge,
    /// One scrape at a time (the counters are copied, not added).
    scrape: Mutex<()>,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// Raises `counter` to `value` (never lowers it).
fn copy(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let r = Registry::new();
        Metrics {
            placements: counter(&r, "fresco_scheduler_placements_total", "Placements granted (sync invocations that held no grant)"),
            releases: counter(&r, "fresco_scheduler_releases_total", "Placements released"),
            grants: counter(&r, "fresco_scheduler_grants_total", "Grants given to API replicas"),
            grant_returns: counter(&r, "fresco_scheduler_grant_returns_total", "Grants returned"),
            async_outcomes: counter_vec(&r, "fresco_scheduler_async_executions_total", "Async execution attempts by outcome: dispatched, completed, requeued, gave_up (failed for good), fenced (a write refused: not the leader)", &["outcome"]),
            async_in_flight: gauge(&r, "fresco_scheduler_async_in_flight", "Async executions this scheduler is running"),
            cron_ticks: counter_vec(&r, "fresco_scheduler_cron_ticks_total", "Cron ticks: fired (an execution queued), or refused (the function could not run)", &["outcome"]),
            cron_passes: counter(&r, "fresco_scheduler_cron_passes_total", "Cron passes (one fenced transaction each) run while leading"),
            cron_pass_micros: counter(&r, "fresco_scheduler_cron_pass_microseconds_total", "Time spent in cron passes, in microseconds (the cost of the ticks)"),
            notifications: counter_vec(&r, "fresco_scheduler_notifications_total", "OpenStack notifications consumed: received (all), malformed (logged and acknowledged)", &["outcome"]),
            notification_executions: counter(&r, "fresco_scheduler_notification_executions_total", "Async executions queued by notification triggers"),
            notification_batches: counter(&r, "fresco_scheduler_notification_batches_total", "Batches of notifications queued, each in one transaction and acknowledged at once"),
            leader: gauge(&r, "fresco_scheduler_leader", "1 while this scheduler holds the leader lease"),
            agents_up: gauge(&r, "fresco_scheduler_agents_up", "Agents up"),
            agent_free_mb: gauge_vec(&r, "fresco_scheduler_agent_free_memory_mb", "Memory an agent has free for placements, in MB", &["agent"]),
            agent_leases: gauge_vec(&r, "fresco_scheduler_agent_leases", "Placements and grant slots held on an agent", &["agent"]),
            queue_depth: gauge(&r, "fresco_scheduler_queue_depth", "Async executions waiting in the queue"),
            queue_oldest_age: gauge(&r, "fresco_scheduler_queue_oldest_age_seconds", "Age of the oldest queued async execution (0 when none)"),
            registry: r,
            scrape: Mutex::new(()),
        }
    }

    /// The text exposition of every metric, brought up to date.
    pub fn render(&self, state: &AppState, cron: &CronStats, queue: Option<(i64, i64)>) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = &state.counters;
        copy(&self.placements, c.placements.load(Ordering::Relaxed));
        copy(&self.releases, c.releases.load(Ordering::Relaxed));
        copy(&self.grants, c.grants.load(Ordering::Relaxed));
        copy(&self.grant_returns, c.grant_returns.load(Ordering::Relaxed));
        let stats = state.dispatcher.stats();
        for (outcome, value) in [
            ("dispatched", &stats.dispatched),
            ("completed", &stats.completed),
            ("requeued", &stats.requeued),
            ("gave_up", &stats.failed),
            ("fenced", &stats.fenced),
        ] {
            copy(
                &self.async_outcomes.with_label_values(&[outcome]),
                value.load(Ordering::Relaxed),
            );
        }
        self.async_in_flight
            .set(i64::try_from(state.dispatcher.in_flight()).unwrap_or(i64::MAX));
        for (outcome, value) in [("fired", &cron.queued), ("refused", &cron.failed)] {
            copy(
                &self.cron_ticks.with_label_values(&[outcome]),
                value.load(Ordering::Relaxed),
            );
        }
        copy(&self.cron_passes, cron.passes.load(Ordering::Relaxed));
        copy(
            &self.cron_pass_micros,
            cron.pass_micros.load(Ordering::Relaxed),
        );
        let n = &state.notifications;
        for (outcome, value) in [("received", &n.received), ("malformed", &n.malformed)] {
            copy(
                &self.notifications.with_label_values(&[outcome]),
                value.load(Ordering::Relaxed),
            );
        }
        copy(
            &self.notification_executions,
            n.queued.load(Ordering::Relaxed),
        );
        copy(
            &self.notification_batches,
            n.batches.load(Ordering::Relaxed),
        );
        self.leader.set(i64::from(state.is_active()));
        let up = state.placer.up_agents();
        self.agents_up
            .set(i64::try_from(up.len()).unwrap_or(i64::MAX));
        self.agent_free_mb.reset();
        self.agent_leases.reset();
        for id in &up {
            if let Some(view) = state.placer.agent(id) {
                self.agent_free_mb
                    .with_label_values(&[&**id])
                    .set(view.free_mb);
                self.agent_leases
                    .with_label_values(&[&**id])
                    .set(i64::from(view.leases));
            }
        }
        if let Some((depth, age)) = queue {
            self.queue_depth.set(depth);
            self.queue_oldest_age.set(age);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode the metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
