//! Pieces shared by Fresco's services: configuration, internal wire types and signed tickets.
//! Kept deliberately small: anything that only one service needs lives in that service.

pub mod conf;
pub mod ticket;
pub mod wire;
