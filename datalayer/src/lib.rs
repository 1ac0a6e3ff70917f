//! tormr-datalayer stores an owner's sealed buckets and serves them to workers
//! that hold a capability token for them.
//!
//! The data layer ("D") is the owner's, but it is built so that whoever hosts it
//! learns nothing: it sees only ciphertext (keys stay in the job master's
//! vault) and opaque bucket ids, and it answers only requests carrying a token
//! the job master minted for exactly that bucket and verb. Uploads may arrive
//! as several ranges in parallel (one per Tor circuit), each checked against
//! its SHA-256, and resume after a broken connection; a bucket becomes readable
//! only when whole, and is immutable after.
//!
//! # Layout
//!
//! - [`store`]: where buckets live ([`store::BucketStore`]; a directory by default).
//! - [`ranges`]: which byte ranges of a staged upload have arrived.
//! - [`service`]: the HTTP handler.
//! - [`client`]: uploads and downloads, resumable and range-parallel.

pub mod client;
pub mod ranges;
pub mod service;
pub mod store;

pub use client::{DataClient, DataError};
pub use service::{DataLayer, DataLayerConfig};
pub use store::{BucketMeta, BucketStore, DirStore};
