//! Pieces shared by Fresco's services: configuration, internal wire types and signed tickets.
//! Kept deliberately small: anything that only one service needs lives in that service.

#[cfg(feature = "agent-client")]
pub mod agent_client;
#[cfg(feature = "archive")]
pub mod archive;
#[cfg(feature = "cli")]
pub mod cli;
pub mod conf;
pub mod enrolment;
pub mod images;
#[cfg(feature = "schedule")]
pub mod schedule;
#[cfg(feature = "scheduler-client")]
pub mod scheduler_client;
pub mod storable;
pub mod ticket;
#[cfg(feature = "tls")]
pub mod tls;
pub mod wire;
