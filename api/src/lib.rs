//! fresco-api: the REST API of Fresco.
//!
//! Layers, from the edge in: `http` (actix-web: parse, authorize, call the domain, render),
//! `domain` (the rules: validation, quotas, tenancy decisions; knows nothing of HTTP),
//! and the store (`fresco_store`: diesel queries, one module per aggregate, every tenant query
//! scoped).

pub mod domain;
pub mod http;
pub mod invoke;
pub mod service;
