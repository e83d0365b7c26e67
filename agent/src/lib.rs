//! fresco-agent: runs functions in hardened Docker containers on one compute node.
//!
//! - `service` is the core: verify a ticket, find or start a container, hand it the event,
//!   wait for the outcome. It knows nothing about HTTP.
//! - `http` is the thin actix-web adapter in front of it (`POST /v1/run`, `GET /healthcheck`,
//!   `GET /metrics`).
//! - `engine` hides Docker behind the `ContainerEngine` trait (bollard, and a recording fake
//!   for unit tests); `container` turns a `FunctionSpec` into a hardened container.
//! - `runtime_api` serves the AWS Lambda Runtime API to one container over its unix socket.
//! - `pool` is the warm-pool and capacity bookkeeping (plain data, no I/O).
//! - `metrics` renders `GET /metrics` (Prometheus text: sandboxes by state, runs by outcome,
//!   starts, memory, code cache), from the counters `service` keeps.
//! - `code` fetches, verifies and unpacks code packages, once per node.
//! - `heartbeat` reports capacity and warm pools to the schedulers, signed with the agent's key,
//!   and applies the retirements their replies carry (`retire`: which containers must never
//!   serve again).
//! - `tickets` admits execution tickets: for this agent, for their payload, once.
//! - `local` is the local emulator (`run-local`, `serve-local`): an agent of its own without
//!   tickets or a control plane, running a developer's functions the agent's way.
//! - `clock` is the wall clock in epoch milliseconds, shared by `service` and `runtime_api`
//!   (so the runtime channel does not import the service that drives it).

pub mod clock;
pub mod code;
pub mod config;
pub mod container;
pub mod engine;
pub mod grants;
pub mod heartbeat;
pub mod http;
pub mod local;
pub mod logs;
pub mod metrics;
pub mod pool;
pub mod prewarm;
pub mod retire;
pub mod runtime_api;
pub mod service;
pub mod tickets;
