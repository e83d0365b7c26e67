//! Prometheus metrics of the API at `GET /metrics` (text format, no token: aggregate figures
//! only, labelled by mode, status, start and outcome: never a project, function, token or
//! secret). Invocations are counted where they happen; the Keystone token cache's counters are
//! copied from `fresco_auth` at each scrape.

use std::sync::Mutex;
use std::time::Duration;

use fresco_auth::AuthStats;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The API's registry and its metrics.
pub struct Metrics {
    registry: Registry,
    /// Sync invocations by the status they ended with.
    invocations: IntCounterVec,
    /// Sync invocations' time in the API (placement, run, answer), by cold or warm start.
    duration: HistogramVec,
    /// Async executions accepted, by source: invoke, webhook, replay.
    accepted: IntCounterVec,
    /// Webhook calls by outcome.
    webhooks: IntCounterVec,
    auth_hits: IntCounter,
    auth_misses: IntCounter,
    auth_stale: IntCounter,
    auth_entries: IntGauge,
    scrape: Mutex<()>,
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

impl Metrics {
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let r = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter =
            |name: &str, help: &str| register(&r, IntCounter::new(name, help).expect("valid"));
        Metrics {
            invocations: counter_vec(
                "fresco_api_invocations_total",
                "Sync invocations by the status they ended with (error: the platform's)",
                &["status"],
            ),
            duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "fresco_api_invocation_duration_seconds",
                        "Sync invocations' time in the API, from the request to the answer, by cold or warm start",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0, 60.0,
                    ]),
                    &["start"],
                )
                .expect("valid metric"),
            ),
            accepted: counter_vec(
                "fresco_api_async_accepted_total",
                "Async executions queued, by source: invoke, webhook, replay",
                &["source"],
            ),
            webhooks: counter_vec(
                "fresco_api_webhook_calls_total",
                "Webhook calls by outcome: ran (sync), accepted (async), unauthorized, rate_limited, not_found",
                &["outcome"],
            ),
            auth_hits: counter(
                "fresco_api_token_cache_hits_total",
                "Keystone token validations answered from the cache",
            ),
            auth_misses: counter(
                "fresco_api_token_cache_misses_total",
                "Keystone token validations that asked Keystone",
            ),
            auth_stale: counter(
                "fresco_api_token_cache_stale_served_total",
                "Tokens accepted from an outdated cache entry while Keystone was unavailable",
            ),
            auth_entries: register(
                &r,
                IntGauge::new("fresco_api_token_cache_entries", "Tokens in the cache")
                    .expect("valid metric"),
            ),
            registry: r,
            scrape: Mutex::new(()),
        }
    }

    /// A sync invocation ended with `status` after `took`, from a cold or warm start.
    pub fn invoked(&self, status: &str, cold: bool, took: Duration) {
        self.invocations.with_label_values(&[status]).inc();
        self.duration
            .with_label_values(&[if cold { "cold" } else { "warm" }])
            .observe(took.as_secs_f64());
    }

    /// An async execution was queued by `source`.
    pub fn accepted(&self, source: &str) {
        self.accepted.with_label_values(&[source]).inc();
    }

    /// A webhook call ended with `outcome`.
    pub fn webhook(&self, outcome: &str) {
        self.webhooks.with_label_values(&[outcome]).inc();
    }

    /// The text exposition, with the token cache's counters brought up to date.
    pub fn render(&self, auth: AuthStats) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (counter, value) in [
            (&self.auth_hits, auth.cache.hits),
            (&self.auth_misses, auth.cache.misses),
            (&self.auth_stale, auth.cache.stale_served),
        ] {
            let current = counter.get();
            if value > current {
                counter.inc_by(value - current);
            }
        }
        self.auth_entries
            .set(i64::try_from(auth.cache.entries).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode the metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
