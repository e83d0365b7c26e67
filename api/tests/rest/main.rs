//! fresco-api's REST contract (docs/api.md), endpoint by endpoint, against a real PostgreSQL:
//! run with `FRESCO_TEST_DATABASE_URL=postgresql://... cargo test -p fresco-api`.
//!
//! One test binary (one link) with a module per area; each test owns a fresh database.

#[path = "../common/mod.rs"]
mod common;

mod agents;
mod aliases;
mod archives;
mod discovery;
mod executions;
mod faults;
mod functions;
mod images;
mod internals;
mod isolation;
mod openapi;
mod outage;
mod quotas;
mod retirements;
mod runtimes;
mod triggers;
mod validation;
mod versions;
