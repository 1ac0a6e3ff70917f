//! tormr-net is how tormr's roles reach each other.
//!
//! A [`Transport`] publishes a service (giving an [`Address`] and a listener)
//! and connects to addresses (giving a byte stream). Above it, every service is
//! HTTP/1.1 (hyper) over whatever stream the transport yields: [`server`] runs a
//! [`Handler`] with bounded connections, header and body timeouts and body
//! limits; [`client`] keeps connections alive and makes typed calls
//! ([`tormr_core::wire::Call`]). Errors travel as JSON bodies.
//!
//! Loopback TCP ([`tcp`]) serves local mode and fast tests; the onion-service
//! transport plugs in behind the same trait, so no service knows which it runs on.
//!
//! # Layout
//!
//! - [`address`]: where a service is.
//! - [`transport`]: the transport trait and its boxed stream.
//! - [`tcp`]: loopback TCP.
//! - [`body`]: body type and helpers (JSON, files, limits).
//! - [`error`]: server-side [`ApiError`] and client-side [`ClientError`].
//! - [`server`], [`client`]: HTTP over streams.

pub mod address;
pub mod body;
pub mod client;
pub mod error;
pub mod memory;
pub mod server;
pub mod tcp;
pub mod transport;

pub use address::Address;
pub use body::Body;
pub use client::{ClientStats, HttpClient};
pub use error::{ApiError, ClientError, ErrorKind};
pub use server::{Handler, Server, ServerConfig};
pub use transport::{BoxStream, Listener, NetError, Transport};
