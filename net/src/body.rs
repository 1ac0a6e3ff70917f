//! Bodies: one boxed type for every request and response, and helpers to
//! build JSON and file bodies and to read bodies within limits.

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body tormr sends: buffered JSON or a stream of bytes.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A 200 response with a JSON body.
pub fn json_body<T: Serialize>(value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(bytes));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A body streamed from a reader in 256 KiB pieces, never held whole.
pub fn stream_body<R: AsyncRead + Send + 'static>(reader: R) -> Body {
    let stream = ReaderStream::with_capacity(reader, 256 * 1024)
        .map_ok(Frame::data)
        .map_err(|e| Box::new(e) as BoxError);
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

/// Why reading a body failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the body stalled: nothing arrived for {secs} s")]
    Stalled { secs: u64 },
    #[error("reading the body failed: {0}")]
    Read(String),
    #[error("writing the body failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("the body is not valid JSON for this request: {0}")]
    Json(String),
}

/// Reads a whole body of at most `limit` bytes, with an idle timeout between pieces.
pub async fn collect_limited<B>(mut body: B, limit: u64, idle: Duration) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut out = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(BodyError::Stalled {
                    secs: idle.as_secs(),
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                return Err(BodyError::TooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Reads a JSON body of at most `limit` bytes.
pub async fn read_json<T: DeserializeOwned>(
    body: Incoming,
    limit: u64,
    idle: Duration,
) -> Result<T, BodyError> {
    let bytes = collect_limited(body, limit, idle).await?;
    serde_json::from_slice(&bytes).map_err(|e| BodyError::Json(e.to_string()))
}

/// Streams a body into `sink`, refusing more than `limit` bytes; returns the
/// byte count. `on_data` sees each piece (for hashing and progress).
pub async fn copy_body<B, W>(
    mut body: B,
    sink: &mut W,
    limit: u64,
    idle: Duration,
    mut on_data: impl FnMut(&[u8]),
) -> Result<u64, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
    W: AsyncWrite + Unpin,
{
    let mut total = 0u64;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(BodyError::Stalled {
                    secs: idle.as_secs(),
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            if total > limit {
                return Err(BodyError::TooLarge { limit });
            }
            on_data(&data);
            sink.write_all(&data).await?;
        }
    }
    sink.flush().await?;
    Ok(total)
}
