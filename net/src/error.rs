//! Errors on both sides of a call.
//!
//! A service answers failures with an [`ApiError`]: an HTTP status plus a JSON
//! body whose `code` is stable. A client turns whatever went wrong into a
//! [`ClientError`] whose [`ErrorKind`] tells the caller what to do about it.

use crate::body::{Body, json_body};
use http::{Response, StatusCode};
use tormr_core::wire::{ErrorBody, ErrorDetail, codes};

/// A failure a service reports to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, codes::CONFLICT, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, codes::TOO_LARGE, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, codes::TIMEOUT, message)
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, codes::BUSY, message)
    }

    /// A failure on our side. The details go to the log, not to the peer.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!("{context}: {error}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            format!("{context} failed; see the service's log"),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::BAD_REQUEST,
            "method not allowed on this path",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = json_body(&body);
        *resp.status_mut() = self.status;
        resp
    }
}

/// What a caller should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient: the network, a timeout, a busy peer. Retry with backoff.
    Retry,
    /// The peer understood and said no (auth, conflict, not found). Don't retry as is.
    Refused,
    /// The peer answered something that is not the protocol. Distrust it.
    PeerMisbehaved,
    /// Our own request was malformed or too large: a bug or bad user input.
    BadRequest,
}

/// A failed call, seen from the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("could not reach {address}: {why}")]
    Connect { address: String, why: String },
    #[error("{what} timed out after {secs} s")]
    Timeout { what: String, secs: u64 },
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the peer's answer to {what} is not valid: {why}")]
    Protocol { what: String, why: String },
    /// The answer began but the connection broke or went quiet before it
    /// ended: a network failure (or a peer that died), not a bad answer.
    #[error("the answer to {what} was cut off: {why}")]
    CutOff { what: String, why: String },
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::CutOff { .. } => ErrorKind::Retry,
            ClientError::Api { status, code, .. } => {
                if *status == 503 || *status == 408 || *status == 429 || *status >= 500 {
                    ErrorKind::Retry
                } else if code == codes::BAD_REQUEST || code == codes::TOO_LARGE {
                    ErrorKind::BadRequest
                } else {
                    ErrorKind::Refused
                }
            }
            ClientError::Protocol { .. } => ErrorKind::PeerMisbehaved,
        }
    }

    /// The service's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retry
    }
}
