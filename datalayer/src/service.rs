//! The data layer's HTTP handler: token checks, ranged uploads and downloads.

use crate::store::{BucketMeta, BucketStore, Progress, StoreIoError};
use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tormr_core::encoding::{Digest, Hasher};
use tormr_core::ids::{BucketId, JobId};
use tormr_core::token::{TokenError, TokenSecret, Verb};
use tormr_core::wire::data::{Deleted, Health, RECEIPT_HEADER, SHA256_HEADER, Stored};
use tormr_net::body::{self, Body, BodyError, copy_body};
use tormr_net::{ApiError, Handler};

/// Limits of a data layer.
#[derive(Debug, Clone)]
pub struct DataLayerConfig {
    /// Largest bucket accepted.
    pub max_bucket_bytes: u64,
    /// A body that sends nothing for this long is cut off.
    pub body_idle: Duration,
    /// Ranged GETs up to this size carry the range's SHA-256.
    pub max_hashed_range: u64,
    /// A whole bucket up to this size is taken into memory and stored in one
    /// step (most map outputs of a small job are this size).
    pub small_bucket_bytes: u64,
}

impl Default for DataLayerConfig {
    fn default() -> Self {
        DataLayerConfig {
            max_bucket_bytes: 16 << 30,
            body_idle: Duration::from_secs(60),
            max_hashed_range: 64 << 20,
            small_bucket_bytes: 1 << 20,
        }
    }
}

#[derive(Default)]
struct Metrics {
    requests: AtomicU64,
    refused: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    buckets_stored: AtomicU64,
}

/// The data layer service.
pub struct DataLayer {
    store: Arc<dyn BucketStore>,
    secret: TokenSecret,
    config: DataLayerConfig,
    metrics: Metrics,
}

fn store_error(e: StoreIoError) -> ApiError {
    match e {
        StoreIoError::NotFound { .. } => ApiError::not_found(e.to_string()),
        StoreIoError::AlreadyStored { .. } => ApiError::conflict(e.to_string()),
        StoreIoError::Mismatch { .. } => ApiError::conflict(e.to_string()),
        StoreIoError::Io { .. } => ApiError::internal("the data layer's disk", e),
    }
}

fn body_error(e: BodyError) -> ApiError {
    match e {
        BodyError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        BodyError::Stalled { .. } => ApiError::timeout(e.to_string()),
        BodyError::Write(io) => ApiError::internal("writing an upload", io),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("this data layer serves only holders of a capability token; ask the job master for a task"))
}

/// Parses `Content-Range: bytes A-B/TOTAL` into `(A, B + 1, TOTAL)`.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b, total): (u64, u64, u64) = (a.parse().ok()?, b.parse().ok()?, total.parse().ok()?);
    (a <= b && b < total).then_some((a, b + 1, total))
}

/// Parses a single `Range: bytes=…` against `size` into `[start, end)`.
fn range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, false) => {
            let n: u64 = b.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (false, true) => (a.parse().ok()?, size),
        (false, false) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.saturating_add(1).min(size),
        ),
        (true, true) => return None,
    };
    (start < end && start < size).then_some((start, end))
}

impl DataLayer {
    pub fn new(store: Arc<dyn BucketStore>, secret: TokenSecret, config: DataLayerConfig) -> Self {
        DataLayer {
            store,
            secret,
            config,
            metrics: Metrics::default(),
        }
    }

    fn check(
        &self,
        headers: &HeaderMap,
        job: &JobId,
        bucket: Option<&BucketId>,
        verb: Verb,
    ) -> Result<(), ApiError> {
        self.check_any(headers, job, bucket, &[verb])
    }

    /// Refuses a request whose token grants none of `verbs` on `bucket`.
    fn check_any(
        &self,
        headers: &HeaderMap,
        job: &JobId,
        bucket: Option<&BucketId>,
        verbs: &[Verb],
    ) -> Result<(), ApiError> {
        let token = bearer(headers)?;
        self.secret
            .check_any(token, job, bucket, verbs, tormr_core::unix_now())
            .map(|_| ())
            .map_err(|e| {
                self.metrics.refused.fetch_add(1, Ordering::Relaxed);
                match e {
                    TokenError::Expired => ApiError::unauthorized(e.to_string()),
                    _ => ApiError::forbidden(e.to_string()),
                }
            })
    }

    async fn put(
        &self,
        request: Request<Incoming>,
        job: JobId,
        bucket: BucketId,
    ) -> Result<Response<Body>, ApiError> {
        self.check(request.headers(), &job, Some(&bucket), Verb::Put)?;
        let headers = request.headers();
        let declared_len: Option<u64> = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let headers_say_whole =
            !headers.contains_key(header::CONTENT_RANGE) && declared_len.is_some();
        let (start, end, total) = match headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
        {
            Some(v) => {
                let (a, b, t) = content_range(v)
                    .ok_or_else(|| ApiError::bad_request(format!("bad Content-Range {v:?}")))?;
                (a, Some(b), Some(t))
            }
            None => (0, declared_len, declared_len),
        };
        if let Some(total) = total
            && total > self.config.max_bucket_bytes
        {
            return Err(ApiError::too_large(format!(
                "buckets are limited to {} bytes",
                self.config.max_bucket_bytes
            )));
        }
        let expected_sha = match headers.get(SHA256_HEADER) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(Digest::parse)
                    .ok_or_else(|| ApiError::bad_request("bad x-tormr-sha256"))?,
            ),
            None => None,
        };
        let limit = end
            .map(|e| e - start)
            .unwrap_or(self.config.max_bucket_bytes);
        let body = request.into_body();
        if headers_say_whole && limit <= self.config.small_bucket_bytes {
            return self.put_small(job, bucket, body, limit, expected_sha).await;
        }
        let (received, digest) = match expected_sha {
            // A range that names its digest is checked before it touches the
            // staged bucket, so a bad range can never overwrite a good one.
            Some(expected) => {
                if limit > self.config.max_hashed_range {
                    return Err(ApiError::too_large(format!(
                        "ranges with x-tormr-sha256 are limited to {} bytes",
                        self.config.max_hashed_range
                    )));
                }
                let data = tormr_net::body::collect_limited(body, limit, self.config.body_idle)
                    .await
                    .map_err(body_error)?;
                let digest = Digest::of(&data);
                if digest != expected {
                    return Err(ApiError::bad_request(
                        "the body does not match its x-tormr-sha256; send the range again",
                    ));
                }
                let mut writer = self
                    .store
                    .stage(&job, &bucket, start, total)
                    .await
                    .map_err(store_error)?;
                tokio::io::AsyncWriteExt::write_all(&mut writer, &data)
                    .await
                    .map_err(|e| ApiError::internal("writing an upload", e))?;
                tokio::io::AsyncWriteExt::flush(&mut writer)
                    .await
                    .map_err(|e| ApiError::internal("writing an upload", e))?;
                (data.len() as u64, digest)
            }
            None => {
                let mut writer = self
                    .store
                    .stage(&job, &bucket, start, total)
                    .await
                    .map_err(store_error)?;
                let mut hasher = Hasher::new();
                let n = copy_body(body, &mut writer, limit, self.config.body_idle, |d| {
                    hasher.update(d)
                })
                .await
                .map_err(body_error)?;
                (n, hasher.finish())
            }
        };
        self.metrics.bytes_in.fetch_add(received, Ordering::Relaxed);
        let end = end.unwrap_or(received);
        if received != end - start {
            return Err(ApiError::bad_request(format!(
                "the body has {received} bytes; the range declares {}",
                end - start
            )));
        }
        let total = total.unwrap_or(end);
        let stored = match self
            .store
            .commit(&job, &bucket, start, end, total, Some(digest))
            .await
            .map_err(store_error)?
        {
            Progress::Partial { received, total } => Stored {
                received,
                size: Some(total),
                complete: false,
                sha256: None,
                receipt: None,
            },
            Progress::Complete(meta) => self.completed(&job, &bucket, &meta),
        };
        let mut resp = body::json_body(&stored);
        *resp.status_mut() = if stored.complete {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        Ok(resp)
    }

    /// The answer for an upload that completed `bucket` (counted as stored).
    fn completed(&self, job: &JobId, bucket: &BucketId, meta: &BucketMeta) -> Stored {
        self.metrics.buckets_stored.fetch_add(1, Ordering::Relaxed);
        Stored {
            received: meta.size,
            size: Some(meta.size),
            complete: true,
            sha256: Some(meta.sha256),
            receipt: Some(self.secret.receipt(job, bucket, meta.size)),
        }
    }

    /// A whole bucket of `len` bytes small enough to hold in memory: read,
    /// checked and stored in one step.
    async fn put_small(
        &self,
        job: JobId,
        bucket: BucketId,
        body: Incoming,
        len: u64,
        expected_sha: Option<Digest>,
    ) -> Result<Response<Body>, ApiError> {
        let data = tormr_net::body::collect_limited(body, len, self.config.body_idle)
            .await
            .map_err(body_error)?;
        if data.len() as u64 != len {
            return Err(ApiError::bad_request(format!(
                "the body has {} bytes; Content-Length says {len}",
                data.len()
            )));
        }
        let digest = Digest::of(&data);
        if expected_sha.is_some_and(|expected| expected != digest) {
            return Err(ApiError::bad_request(
                "the body does not match its x-tormr-sha256; send it again",
            ));
        }
        let meta = self
            .store
            .put_whole(&job, &bucket, data, digest)
            .await
            .map_err(store_error)?;
        self.metrics.bytes_in.fetch_add(len, Ordering::Relaxed);
        let mut resp = body::json_body(&self.completed(&job, &bucket, &meta));
        *resp.status_mut() = StatusCode::CREATED;
        Ok(resp)
    }

    async fn get(
        &self,
        request: Request<Incoming>,
        job: JobId,
        bucket: BucketId,
        head: bool,
    ) -> Result<Response<Body>, ApiError> {
        // A writer may HEAD the bucket it writes: after a lost PUT answer
        // that is how it learns the bucket is complete, and gets its receipt.
        let verbs: &[Verb] = if head {
            &[Verb::Get, Verb::Put]
        } else {
            &[Verb::Get]
        };
        self.check_any(request.headers(), &job, Some(&bucket), verbs)?;
        let meta = self
            .store
            .meta(&job, &bucket)
            .await
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("bucket {bucket} is not stored (yet)")))?;
        let wanted = request
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (start, end, status, sha) = match wanted {
            None => (0, meta.size, StatusCode::OK, meta.sha256),
            Some(spec) => {
                let (start, end) = range(&spec, meta.size).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        tormr_core::wire::codes::RANGE,
                        format!(
                            "range {spec:?} does not fit a bucket of {} bytes",
                            meta.size
                        ),
                    )
                })?;
                let sha = if end - start <= self.config.max_hashed_range && !head {
                    self.hash_range(&job, &bucket, start, end).await?
                } else {
                    Digest::default()
                };
                (start, end, StatusCode::PARTIAL_CONTENT, sha)
            }
        };
        let body = if head {
            body::empty()
        } else {
            self.metrics
                .bytes_out
                .fetch_add(end - start, Ordering::Relaxed);
            body::stream_body(
                self.store
                    .read(&job, &bucket, start, end)
                    .await
                    .map_err(store_error)?,
            )
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        h.insert(header::ETAG, header_value(&format!("\"{}\"", meta.sha256)));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if status == StatusCode::PARTIAL_CONTENT {
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{}/{}", end - 1, meta.size)),
            );
        }
        if sha != Digest::default() || meta.size == 0 {
            h.insert(SHA256_HEADER, header_value(&sha.to_hex()));
        }
        h.insert(
            RECEIPT_HEADER,
            header_value(&self.secret.receipt(&job, &bucket, meta.size)),
        );
        Ok(resp)
    }

    async fn hash_range(
        &self,
        job: &JobId,
        bucket: &BucketId,
        start: u64,
        end: u64,
    ) -> Result<Digest, ApiError> {
        let mut reader = self
            .store
            .read(job, bucket, start, end)
            .await
            .map_err(store_error)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| ApiError::internal("reading a bucket", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }

    async fn delete(
        &self,
        request: Request<Incoming>,
        job: JobId,
    ) -> Result<Response<Body>, ApiError> {
        self.check(request.headers(), &job, None, Verb::Delete)?;
        let buckets = self.store.delete_job(&job).await.map_err(store_error)?;
        Ok(body::json_body(&Deleted { buckets }))
    }

    fn metrics_text(&self) -> Response<Body> {
        let m = &self.metrics;
        let text = format!(
            "# TYPE tormr_datalayer_requests_total counter\ntormr_datalayer_requests_total {}\n\
             # TYPE tormr_datalayer_refused_total counter\ntormr_datalayer_refused_total {}\n\
             # TYPE tormr_datalayer_bytes_in_total counter\ntormr_datalayer_bytes_in_total {}\n\
             # TYPE tormr_datalayer_bytes_out_total counter\ntormr_datalayer_bytes_out_total {}\n\
             # TYPE tormr_datalayer_buckets_stored_total counter\ntormr_datalayer_buckets_stored_total {}\n",
            m.requests.load(Ordering::Relaxed),
            m.refused.load(Ordering::Relaxed),
            m.bytes_in.load(Ordering::Relaxed),
            m.bytes_out.load(Ordering::Relaxed),
            m.buckets_stored.load(Ordering::Relaxed),
        );
        let mut resp = Response::new(body::full(text));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        resp
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn ids(job: &str, bucket: Option<&str>) -> Result<(JobId, Option<BucketId>), ApiError> {
    let job = JobId::parse(job).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let bucket = bucket
        .map(BucketId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((job, bucket))
}

#[async_trait]
impl Handler for DataLayer {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let path = request.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = request.method().clone();
        match (method, parts.as_slice()) {
            (http::Method::GET, ["v1", "health"]) => Ok(body::json_body(&Health {
                version: env!("CARGO_PKG_VERSION").into(),
                buckets_stored_since_start: self.metrics.buckets_stored.load(Ordering::Relaxed),
            })),
            (http::Method::GET, ["metrics"]) => Ok(self.metrics_text()),
            (m, ["v1", "buckets", job, bucket]) => {
                let (job, bucket) = ids(job, Some(bucket))?;
                let bucket = bucket.ok_or_else(|| ApiError::bad_request("missing bucket"))?;
                match m {
                    http::Method::PUT => self.put(request, job, bucket).await,
                    http::Method::GET => self.get(request, job, bucket, false).await,
                    http::Method::HEAD => self.get(request, job, bucket, true).await,
                    _ => Err(ApiError::method_not_allowed()),
                }
            }
            (http::Method::DELETE, ["v1", "jobs", job]) => {
                let (job, _) = ids(job, None)?;
                self.delete(request, job).await
            }
            _ => Err(ApiError::not_found(format!("no such endpoint {path}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(content_range("bytes 0-9/100"), Some((0, 10, 100)));
        assert_eq!(content_range("bytes 90-99/100"), Some((90, 100, 100)));
        assert_eq!(content_range("bytes 90-100/100"), None);
        assert_eq!(content_range("bytes 9-1/100"), None);
        assert_eq!(range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(range("bytes=0-1000", 100), Some((0, 100)));
        assert_eq!(range("bytes=100-", 100), None);
        assert_eq!(range("bytes=0-1,5-6", 100), None);
        assert_eq!(range("items=0-1", 100), None);
    }
}
