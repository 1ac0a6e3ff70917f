//! tormr-core is the vocabulary every tormr role shares.
//!
//! The bulletin, the job master, the data layer and the worker never link each
//! other; they agree through the types in this crate: identifiers, the wire
//! messages of the `/v1/` protocol (every request names its response), job
//! definitions, the sealed-bucket format (zstd, then XChaCha20-Poly1305 in the
//! STREAM construction), capability tokens the job master mints for the data
//! layer, Hadoop's partitioner contract, counters, and the store that keeps job
//! and board state across restarts.
//!
//! # Layout
//!
//! - [`ids`]: job, bucket, task and request identifiers.
//! - [`encoding`]: base64 / hex newtypes used in wire messages.
//! - [`identity`]: ed25519 pseudonyms and the [`identity::Signed`] envelope.
//! - [`image`]: a job's container image and the chunked archive it travels in.
//! - [`seal`]: bucket encryption (a `Write` that seals, a `Read` that opens).
//! - [`token`]: capability tokens for data-layer verbs on one bucket.
//! - [`partition`]: key extraction and partitioning of map output lines.
//! - [`counters`]: Hadoop-style counters and `reporter:` stderr lines.
//! - [`spec`]: job definitions (Streaming steps, mrjob steps).
//! - [`wire`]: request and response types of every service.
//! - [`store`]: the key-value store trait with redb and in-memory backends.

pub mod counters;
pub mod encoding;
pub mod identity;
pub mod ids;
pub mod image;
pub mod partition;
pub mod random;
pub mod seal;
pub mod spec;
pub mod store;
pub mod token;
pub mod wire;

/// Unix time in seconds, the unit of every expiry on the wire.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
