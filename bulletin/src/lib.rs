//! tormr-bulletin is the meeting point of owners and volunteers.
//!
//! Volunteers register a pseudonym (an ed25519 public key) with what they offer
//! and long-poll for a ticket; owners post a cluster request signed by the job's
//! key and long-poll for its match. When a request has gathered its workers (or
//! its wait is over and it has at least its minimum), the board signs a join
//! ticket for each matched worker, naming the worker's pseudonym and the job's
//! key and address. The board learns onion addresses, public keys and capability
//! figures, never data or job code; it hands a job's address only to the
//! workers matched to it.
//!
//! # Layout
//!
//! - [`board`]: the matching state machine, pure and clock-injected.
//! - [`service`]: the HTTP handler, persistence and long-polls.
//! - [`client`]: what volunteers and owners call.

pub mod board;
pub mod client;
pub mod service;

pub use board::{Board, BoardConfig};
pub use client::BulletinClient;
pub use service::Bulletin;
