//! fresco-api: the REST API of Fresco.
//!
//! Layers, from the edge in: `http` (actix-web: parse, authorize, call a command or the
//! domain, render), `command` (what a request asks for, done through the domain with the
//! database on the blocking pool: resolving and enqueueing invocations), `domain` (the rules: validation, quotas, tenancy decisions; knows nothing of HTTP),
//! and the store (`fresco_store`: diesel queries, one module per aggregate, every tenant query
//! scoped).

pub mod command;
pub mod domain;
pub mod grants;
pub mod hooks;
pub mod http;
pub mod invoke;
pub mod metrics;
pub mod service;
pub mod shadow;
