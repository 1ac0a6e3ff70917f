//! The `/v1/` protocol: every request type names its method, path and response.
//!
//! Control messages are JSON; bulk data (buckets, job files) travels as binary
//! bodies outside these types. Errors are always a JSON [`ErrorBody`] with a
//! stable `code` a client can act on and a `message` a person can read.

pub mod bulletin;
pub mod data;
pub mod job;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version every path is under.
pub const API_PREFIX: &str = "/v1";

/// HTTP methods used by typed calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// A typed request: where it goes and what comes back.
pub trait Call: Serialize + Send + Sync {
    type Response: DeserializeOwned + Serialize + Send;
    const METHOD: Method;
    /// The path, including any query string.
    fn path(&self) -> String;
    /// Extra seconds a long-poll may hold the call open before answering.
    fn hold_secs(&self) -> u64 {
        0
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Stable error codes. Clients branch on these, never on messages.
pub mod codes {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const CONFLICT: &str = "conflict";
    pub const TOO_LARGE: &str = "too_large";
    pub const TIMEOUT: &str = "timeout";
    pub const BUSY: &str = "busy";
    pub const INTERNAL: &str = "internal";
    pub const RANGE: &str = "range_not_satisfiable";
    /// The worker already holds its share of the owner's input.
    pub const BUCKET_CAP: &str = "bucket_cap_reached";
    /// The ticket was already redeemed.
    pub const TICKET_USED: &str = "ticket_used";
    /// The worker's session is unknown or was dropped; join again.
    pub const SESSION: &str = "session_unknown";
}

/// An empty acknowledgement.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ack {}

/// Long-polls are capped so a peer cannot hold connections forever.
pub const MAX_WAIT_SECS: u64 = 30;

pub(crate) fn clamp_wait(wait: u64) -> u64 {
    wait.min(MAX_WAIT_SECS)
}
