//! The data layer's HTTP surface. Bucket bodies are raw bytes, so these are
//! paths, headers and small JSON answers rather than typed calls.
//!
//! - `PUT /v1/buckets/{job}/{bucket}`: store a sealed bucket. Optional
//!   `Content-Range: bytes A-B/TOTAL` uploads one range (resumable, parallel),
//!   optional `x-tormr-sha256` checks the body. Answers [`Stored`].
//! - `GET|HEAD /v1/buckets/{job}/{bucket}`: read it, with optional
//!   `Range: bytes=A-B`; `x-tormr-sha256` gives the whole bucket's digest,
//!   `x-tormr-receipt` the data layer's receipt for it.
//! - `DELETE /v1/jobs/{job}`: delete every bucket of a job (delete token).
//! - `GET /v1/health`.
//!
//! Every request carries `Authorization: Bearer <capability token>`.

use crate::encoding::Digest;
use crate::ids::{BucketId, JobId};
use serde::{Deserialize, Serialize};

/// Header with the SHA-256 of a body or of a whole stored bucket.
pub const SHA256_HEADER: &str = "x-tormr-sha256";

/// Header of a HEAD or GET answer with the data layer's receipt for the bucket.
pub const RECEIPT_HEADER: &str = "x-tormr-receipt";

pub fn bucket_path(job: &JobId, bucket: &BucketId) -> String {
    format!("/v1/buckets/{job}/{bucket}")
}

pub fn job_path(job: &JobId) -> String {
    format!("/v1/jobs/{job}")
}

/// Answer to a PUT.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stored {
    /// Bytes of the bucket received so far.
    pub received: u64,
    /// Total size once known.
    pub size: Option<u64>,
    /// True once every byte is in and the bucket is readable.
    pub complete: bool,
    /// Digest of the whole bucket once complete.
    pub sha256: Option<Digest>,
    /// Once complete, the data layer's signed word that it holds the bucket
    /// (see `token::TokenSecret::receipt`), for the worker's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// Answer to a job delete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deleted {
    pub buckets: u64,
}

/// Answer to a health check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub version: String,
    /// Buckets completed since this data layer process started.
    pub buckets_stored_since_start: u64,
}
