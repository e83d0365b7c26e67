//! fresco-scheduler: the agent registry, placement with per-project concurrency and rate
//! accounting, and the durable async queue.
//!
//! Modules by layer: `placement` is the domain (no HTTP, no database); the database is
//! `fresco_store::queue` (the store crate is the only one that knows diesel); `http` is the
//! only module that knows actix-web; `dispatch` drives the async queue and `leader` holds the
//! two non-diesel connections (leader lease, LISTEN);
//! `retirements` is the domain of the warm-container retirement log handed to agents;
//! `cron` fires the ticks of cron triggers while active; `metrics` renders `GET /metrics` (Prometheus text); `retention` runs the periodic purge (records, bodies, unused code) while active; `service`
//! wires them together.

pub mod cron;
pub mod dispatch;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod notifications;
pub mod placement;
pub mod retention;
pub mod retirements;
pub mod service;
pub mod settings;
