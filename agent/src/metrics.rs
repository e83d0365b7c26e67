//! Prometheus metrics of the agent at `GET /metrics` (text format): sandboxes by state (busy,
//! idle, frozen, pre-warmed), runs by outcome, how invocations started (warm, cold, a claimed
//! pre-warmed sandbox), memory capacity and reservations, the code cache's bytes and lookups.
//! Labels name states and outcomes only: never a project, function, execution or secret.
//!
//! The counters live as atomics where the work happens (`service::Metrics`, the code cache's
//! lookups) and are copied into the registry's counters at each scrape (they only grow); the
//! gauges are read from the agent's pools at each scrape.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use fresco_common::wire::RunStatus;

use crate::service::{Holdings, Metrics as Counters, RUN_STATUSES};

/// The agent's registry and its metrics.
pub struct Metrics {
    registry: Registry,
    sandboxes: IntGaugeVec,
    runs: IntCounterVec,
    starts: IntCounterVec,
    timeouts: IntCounter,
    freeze_failures: IntCounter,
    output_cutoffs: IntCounter,
    prewarmed_started: IntCounter,
    memory_capacity: IntGauge,
    memory_reserved: IntGauge,
    memory_free: IntGauge,
    code_bytes: IntGauge,
    code_pinned_bytes: IntGauge,
    code_packages: IntGauge,
    code_lookups: IntCounterVec,
    /// The `outcome` label of each counter of `Counters::outcomes`.
    outcomes: Vec<String>,
    /// One scrape at a time (the counters are copied, not added).
    scrape: Mutex<()>,
}

/// A status's name as the agents' results spell it (the wire's, never spelled again here).
fn status_label(status: RunStatus) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{status:?}").to_lowercase(),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    #[allow(clippy::expect_used)]
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

/// Raises `counter` to `value` (never lowers it).
fn copy(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Metrics {
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let r = Registry::new();
        let counter =
            |name: &str, help: &str| register(&r, IntCounter::new(name, help).expect("valid"));
        let gauge =
            |name: &str, help: &str| register(&r, IntGauge::new(name, help).expect("valid"));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Metrics {
            sandboxes: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "fresco_agent_sandboxes",
                        "Sandboxes by state: busy (running an invocation), idle (warm, not frozen yet), frozen (warm, held by the freezer), prewarmed (waiting for a function)",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            runs: counter_vec(
                "fresco_agent_runs_total",
                "Runs by outcome: the result's status (succeeded, failed, timeout, oom, error), or refused (nothing ran: no capacity, engine down, bad ticket or grant, stopping)",
                &["outcome"],
            ),
            starts: counter_vec(
                "fresco_agent_starts_total",
                "Invocations by how their sandbox started: warm (a sandbox of the function), prewarmed (a pre-warmed sandbox claimed), cold (a sandbox created)",
                &["start"],
            ),
            timeouts: counter("fresco_agent_timeouts_total", "Invocations killed by their wall-clock timeout"),
            freeze_failures: counter("fresco_agent_freeze_failures_total", "Idle sandboxes destroyed because they could not be frozen or thawed"),
            output_cutoffs: counter("fresco_agent_output_cutoffs_total", "Sandboxes killed for passing their output limit"),
            prewarmed_started: counter("fresco_agent_prewarmed_started_total", "Pre-warmed sandboxes started"),
            memory_capacity: gauge("fresco_agent_memory_capacity_mb", "Memory this agent offers to sandboxes, in MB"),
            memory_reserved: gauge("fresco_agent_memory_reserved_mb", "Memory reserved by sandboxes (busy, idle and pre-warmed), in MB"),
            memory_free: gauge("fresco_agent_memory_free_mb", "Memory not reserved by any sandbox, in MB"),
            code_bytes: gauge("fresco_agent_code_cache_bytes", "Bytes of unpacked code packages on this node"),
            code_pinned_bytes: gauge("fresco_agent_code_cache_pinned_bytes", "Bytes of unpacked code packages held by live sandboxes (never evicted)"),
            code_packages: gauge("fresco_agent_code_cache_packages", "Code packages on this node"),
            code_lookups: counter_vec(
                "fresco_agent_code_cache_lookups_total",
                "Code package lookups by result: hit (on this node), download (fetched from the API)",
                &["result"],
            ),
            outcomes: RUN_STATUSES
                .iter()
                .map(|status| status_label(*status))
                .chain(std::iter::once("refused".to_owned()))
                .collect(),
            registry: r,
            scrape: Mutex::new(()),
        }
    }

    /// The text exposition of every metric, brought up to date from `counters` and `now`.
    pub fn render(&self, counters: &Counters, now: &Holdings) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (state, value) in [
            ("busy", now.busy),
            ("idle", now.idle),
            ("frozen", now.frozen),
            ("prewarmed", now.prewarmed),
        ] {
            self.sandboxes
                .with_label_values(&[state])
                .set(gauge_value(value));
        }
        for (outcome, value) in self.outcomes.iter().zip(&counters.outcomes) {
            copy(
                &self.runs.with_label_values(&[outcome.as_str()]),
                value.load(Ordering::Relaxed),
            );
        }
        for (start, value) in [
            ("warm", &counters.warm_starts),
            ("prewarmed", &counters.prewarmed_claims),
            ("cold", &counters.cold_starts),
        ] {
            copy(
                &self.starts.with_label_values(&[start]),
                value.load(Ordering::Relaxed),
            );
        }
        copy(&self.timeouts, counters.timeouts.load(Ordering::Relaxed));
        copy(
            &self.freeze_failures,
            counters.freeze_failures.load(Ordering::Relaxed),
        );
        copy(
            &self.output_cutoffs,
            counters.output_cutoffs.load(Ordering::Relaxed),
        );
        copy(
            &self.prewarmed_started,
            counters.prewarmed_started.load(Ordering::Relaxed),
        );
        self.memory_capacity.set(gauge_value(now.capacity_mb));
        self.memory_reserved.set(gauge_value(now.reserved_mb));
        self.memory_free
            .set(gauge_value(now.capacity_mb.saturating_sub(now.reserved_mb)));
        self.code_bytes.set(gauge_value(now.code.bytes));
        self.code_pinned_bytes
            .set(gauge_value(now.code.pinned_bytes));
        self.code_packages
            .set(i64::try_from(now.code.packages).unwrap_or(i64::MAX));
        copy(
            &self.code_lookups.with_label_values(&["hit"]),
            now.code_lookups.hits,
        );
        copy(
            &self.code_lookups.with_label_values(&["download"]),
            now.code_lookups.downloads,
        );
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode the metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{CodeLookups, CodeUsage};

    #[test]
    fn renders_states_outcomes_and_capacity_without_going_back() {
        let metrics = Metrics::new();
        let counters = Counters::default();
        counters.outcomes[0].fetch_add(3, Ordering::Relaxed);
        counters.outcomes[5].fetch_add(1, Ordering::Relaxed);
        counters.cold_starts.fetch_add(1, Ordering::Relaxed);
        counters.warm_starts.fetch_add(2, Ordering::Relaxed);
        let now = Holdings {
            busy: 1,
            idle: 2,
            frozen: 3,
            prewarmed: 4,
            capacity_mb: 1024,
            reserved_mb: 256,
            code: CodeUsage {
                packages: 2,
                bytes: 4096,
                pinned_bytes: 1024,
            },
            code_lookups: CodeLookups {
                hits: 5,
                downloads: 2,
            },
        };
        let text = metrics.render(&counters, &now);
        for line in [
            "fresco_agent_sandboxes{state=\"frozen\"} 3",
            "fresco_agent_sandboxes{state=\"prewarmed\"} 4",
            "fresco_agent_runs_total{outcome=\"succeeded\"} 3",
            "fresco_agent_runs_total{outcome=\"refused\"} 1",
            "fresco_agent_starts_total{start=\"warm\"} 2",
            "fresco_agent_starts_total{start=\"cold\"} 1",
            "fresco_agent_memory_free_mb 768",
            "fresco_agent_code_cache_bytes 4096",
            "fresco_agent_code_cache_lookups_total{result=\"hit\"} 5",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A second scrape copies, it does not add.
        let again = metrics.render(&counters, &now);
        assert!(again.contains("fresco_agent_runs_total{outcome=\"succeeded\"} 3"));
    }
}
