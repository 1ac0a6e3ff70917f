//! Uploads and downloads of sealed buckets.
//!
//! A [`DataClient`] has one or more lanes: HTTP clients of the same data layer.
//! On loopback one lane suffices; over Tor each lane is its own circuit, and a
//! bucket is split into ranges fetched over all lanes at once, each range
//! checked against its SHA-256 and retried on another lane if it fails — like
//! BitTorrent pieces. A single-lane download streams the whole bucket and
//! resumes from where it broke.

use crate::store::BucketMeta;
use bytes::Bytes;
use http::header;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tormr_core::encoding::{Digest, Hasher};
use tormr_core::ids::{BucketId, JobId};
use tormr_core::wire::data::{
    Deleted, RECEIPT_HEADER, SHA256_HEADER, Stored, bucket_path, job_path,
};
use tormr_net::body::{self, collect_limited, copy_body};
use tormr_net::{ClientError, ErrorKind, HttpClient};

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("data layer call for bucket {bucket} failed: {source}")]
    Call { bucket: String, source: ClientError },
    #[error("local file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("bucket {bucket} arrived damaged: {why}")]
    Corrupt { bucket: String, why: String },
}

impl DataError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DataError::Call { source, .. } => source.is_retryable(),
            DataError::Corrupt { .. } => true,
            DataError::Io { .. } => false,
        }
    }
}

/// Shared progress callback: bytes moved since the last call.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// A progress callback that ignores progress.
pub fn no_progress() -> Progress {
    Arc::new(|_| {})
}

#[derive(Clone)]
pub struct DataClient {
    lanes: Vec<HttpClient>,
    job: JobId,
    /// Size of one range when a transfer is split.
    range_bytes: u64,
    /// Attempts per range before the transfer fails.
    attempts: u32,
    body_idle: Duration,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl DataClient {
    /// A client with one lane per given HTTP client (at least one).
    pub fn new(lanes: Vec<HttpClient>, job: JobId) -> Self {
        DataClient {
            lanes,
            job,
            range_bytes: 8 << 20,
            attempts: 5,
            body_idle: Duration::from_secs(60),
        }
    }

    pub fn with_range_bytes(mut self, bytes: u64) -> Self {
        self.range_bytes = bytes.max(64 * 1024);
        self
    }

    pub fn job(&self) -> &JobId {
        &self.job
    }

    /// Requests made and connections opened, over all lanes.
    pub fn traffic(&self) -> (u64, u64) {
        self.lanes.iter().fold((0, 0), |(r, c), l| {
            (r + l.stats().requests(), c + l.stats().connections())
        })
    }

    fn lane(&self, i: usize) -> &HttpClient {
        &self.lanes[i % self.lanes.len().max(1)]
    }

    fn call_err(&self, bucket: &BucketId) -> impl FnOnce(ClientError) -> DataError + '_ {
        let bucket = bucket.to_string();
        move |source| DataError::Call { bucket, source }
    }

    /// Size and digest of a stored bucket.
    pub async fn head(&self, bucket: &BucketId, token: &str) -> Result<BucketMeta, DataError> {
        let http = self.lane(0).with_bearer(token);
        let req = http
            .request(http::Method::HEAD, &bucket_path(&self.job, bucket))
            .body(body::empty())
            .map_err(|e| DataError::Corrupt {
                bucket: bucket.to_string(),
                why: e.to_string(),
            })?;
        let resp = http
            .send(req, Duration::from_secs(60))
            .await
            .map_err(self.call_err(bucket))?;
        meta_from_headers(bucket, resp.headers())
    }

    /// Uploads a sealed bucket file: one streamed request on a single lane,
    /// parallel hash-checked ranges over several.
    pub async fn put_file(
        &self,
        bucket: &BucketId,
        token: &str,
        path: &Path,
        progress: Progress,
    ) -> Result<BucketMeta, DataError> {
        let size = tokio::fs::metadata(path).await.map_err(io_err(path))?.len();
        if self.lanes.len() <= 1 {
            let meta =
                with_retry(self.attempts, || self.put_whole(bucket, token, path, size)).await?;
            progress(size);
            return Ok(meta);
        }
        let ranges: VecDeque<(u64, u64, u32)> = split(size, self.range_bytes)
            .into_iter()
            .map(|(a, b)| (a, b, 0))
            .collect();
        let queue = Arc::new(Mutex::new(ranges));
        let done: Arc<Mutex<Option<BucketMeta>>> = Arc::new(Mutex::new(None));
        let mut lanes = tokio::task::JoinSet::new();
        for lane in 0..self.lanes.len().max(1) {
            let this = self.clone();
            let (queue, done, progress) = (queue.clone(), done.clone(), progress.clone());
            let (bucket, token, path) = (bucket.clone(), token.to_owned(), path.to_owned());
            lanes.spawn(async move {
                while let Some((start, end, tries)) = pop(&queue) {
                    match this
                        .put_range(lane, &bucket, &token, &path, start, end, size)
                        .await
                    {
                        Ok(stored) => {
                            progress(end - start);
                            if let Some(meta) = stored {
                                *done.lock().unwrap_or_else(|p| p.into_inner()) = Some(meta);
                            }
                        }
                        Err(e) if e.is_retryable() && tries + 1 < this.attempts => {
                            tracing::debug!(
                                "range {start}-{end} of {bucket} failed, retrying: {e}"
                            );
                            push(&queue, (start, end, tries + 1));
                            tokio::time::sleep(backoff(tries)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            });
        }
        while let Some(joined) = lanes.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    return Err(DataError::Io {
                        path: path.display().to_string(),
                        source: std::io::Error::other(e),
                    });
                }
            }
        }
        let finished = done.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match finished {
            Some(meta) => Ok(meta),
            // Every range was already stored by an earlier, interrupted upload.
            None => self.head(bucket, token).await,
        }
    }

    /// Streams the whole file in one request; the data layer hashes it as it writes.
    async fn put_whole(
        &self,
        bucket: &BucketId,
        token: &str,
        path: &Path,
        size: u64,
    ) -> Result<BucketMeta, DataError> {
        let file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
        let http = self.lane(0).with_bearer(token);
        let req = http
            .request(http::Method::PUT, &bucket_path(&self.job, bucket))
            .header(header::CONTENT_LENGTH, size)
            .body(body::stream_body(file))
            .map_err(|e| DataError::Corrupt {
                bucket: bucket.to_string(),
                why: e.to_string(),
            })?;
        let timeout = transfer_timeout(size);
        match http.send(req, timeout).await {
            Ok(resp) => {
                let bytes = collect_limited(resp.into_body(), 64 * 1024, timeout)
                    .await
                    .map_err(|e| DataError::Corrupt {
                        bucket: bucket.to_string(),
                        why: e.to_string(),
                    })?;
                let stored: Stored =
                    serde_json::from_slice(&bytes).map_err(|e| DataError::Corrupt {
                        bucket: bucket.to_string(),
                        why: e.to_string(),
                    })?;
                match (stored.complete, stored.size, stored.sha256) {
                    (true, Some(size), Some(sha256)) => Ok(BucketMeta {
                        size,
                        sha256,
                        receipt: stored.receipt,
                    }),
                    _ => Err(DataError::Corrupt {
                        bucket: bucket.to_string(),
                        why: "the data layer did not complete the bucket".into(),
                    }),
                }
            }
            Err(e) if e.code() == Some("conflict") => {
                let meta = self.head(bucket, token).await?;
                if meta.size == size {
                    Ok(meta)
                } else {
                    Err(DataError::Call {
                        bucket: bucket.to_string(),
                        source: e,
                    })
                }
            }
            Err(e) => Err(DataError::Call {
                bucket: bucket.to_string(),
                source: e,
            }),
        }
    }

    /// Sends one range; returns the bucket's metadata if this range completed it.
    #[allow(clippy::too_many_arguments)]
    async fn put_range(
        &self,
        lane: usize,
        bucket: &BucketId,
        token: &str,
        path: &Path,
        start: u64,
        end: u64,
        total: u64,
    ) -> Result<Option<BucketMeta>, DataError> {
        let data = read_range(path, start, end).await?;
        let http = self.lane(lane).with_bearer(token);
        let mut req = http
            .request(http::Method::PUT, &bucket_path(&self.job, bucket))
            .header(header::CONTENT_LENGTH, end - start)
            .header(SHA256_HEADER, Digest::of(&data).to_hex());
        if total > 0 {
            req = req.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", end - 1),
            );
        }
        let req = req.body(body::full(data)).map_err(|e| DataError::Corrupt {
            bucket: bucket.to_string(),
            why: e.to_string(),
        })?;
        let timeout = transfer_timeout(end - start);
        match http.send(req, timeout).await {
            Ok(resp) => {
                let bytes = collect_limited(resp.into_body(), 64 * 1024, timeout)
                    .await
                    .map_err(|e| DataError::Corrupt {
                        bucket: bucket.to_string(),
                        why: e.to_string(),
                    })?;
                let stored: Stored =
                    serde_json::from_slice(&bytes).map_err(|e| DataError::Corrupt {
                        bucket: bucket.to_string(),
                        why: e.to_string(),
                    })?;
                Ok(match (stored.complete, stored.size, stored.sha256) {
                    (true, Some(size), Some(sha256)) => Some(BucketMeta {
                        size,
                        sha256,
                        receipt: stored.receipt,
                    }),
                    _ => None,
                })
            }
            // Stored already: an earlier attempt finished but its answer was lost.
            Err(e) if e.code() == Some("conflict") => {
                let meta = self.head(bucket, token).await?;
                if meta.size == total {
                    Ok(Some(meta))
                } else {
                    Err(DataError::Call {
                        bucket: bucket.to_string(),
                        source: e,
                    })
                }
            }
            Err(e) => Err(DataError::Call {
                bucket: bucket.to_string(),
                source: e,
            }),
        }
    }

    /// Downloads a bucket into `path`, checking its SHA-256.
    pub async fn get_to_file(
        &self,
        bucket: &BucketId,
        token: &str,
        path: &Path,
        progress: Progress,
    ) -> Result<BucketMeta, DataError> {
        let meta = with_retry(self.attempts, || self.head(bucket, token)).await?;
        match tokio::fs::remove_file(path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(path)(e)),
        }
        if self.lanes.len() > 1 && meta.size > self.range_bytes {
            self.get_ranges(bucket, token, path, &meta, progress)
                .await?;
        } else {
            with_retry(self.attempts, || {
                self.get_whole(bucket, token, path, &meta, progress.clone())
            })
            .await?;
        }
        Ok(meta)
    }

    /// One stream, verified against the whole-bucket digest. Called again
    /// after a failure, it resumes after the bytes already on disk.
    async fn get_whole(
        &self,
        bucket: &BucketId,
        token: &str,
        path: &Path,
        meta: &BucketMeta,
        progress: Progress,
    ) -> Result<(), DataError> {
        let (have, mut hasher) = hash_existing(path).await?;
        let corrupt = |why: String| DataError::Corrupt {
            bucket: bucket.to_string(),
            why,
        };
        if have > meta.size {
            let _ = tokio::fs::remove_file(path).await;
            return Err(corrupt("more bytes on disk than the bucket holds".into()));
        }
        if have < meta.size || meta.size == 0 {
            let http = self.lane(0).with_bearer(token);
            let mut req = http.request(http::Method::GET, &bucket_path(&self.job, bucket));
            if have > 0 {
                req = req.header(header::RANGE, format!("bytes={have}-"));
            }
            let req = req
                .body(body::empty())
                .map_err(|e| corrupt(e.to_string()))?;
            let resp = http
                .send(req, Duration::from_secs(60))
                .await
                .map_err(self.call_err(bucket))?;
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(io_err(path))?;
            copy_body(
                resp.into_body(),
                &mut file,
                meta.size - have,
                self.body_idle,
                |d| {
                    hasher.update(d);
                    progress(d.len() as u64);
                },
            )
            .await
            .map_err(|e| corrupt(e.to_string()))?;
        }
        let n = tokio::fs::metadata(path).await.map_err(io_err(path))?.len();
        if n != meta.size || hasher.finish() != meta.sha256 {
            // Start over next time rather than resume from damaged bytes.
            let _ = tokio::fs::remove_file(path).await;
            return Err(corrupt(format!(
                "got {n} of {} bytes or a wrong digest",
                meta.size
            )));
        }
        Ok(())
    }

    /// Parallel ranges over every lane, each verified.
    async fn get_ranges(
        &self,
        bucket: &BucketId,
        token: &str,
        path: &Path,
        meta: &BucketMeta,
        progress: Progress,
    ) -> Result<(), DataError> {
        let file = tokio::fs::File::create(path).await.map_err(io_err(path))?;
        file.set_len(meta.size).await.map_err(io_err(path))?;
        drop(file);
        let ranges: VecDeque<(u64, u64, u32)> = split(meta.size, self.range_bytes)
            .into_iter()
            .map(|(a, b)| (a, b, 0))
            .collect();
        let queue = Arc::new(Mutex::new(ranges));
        let mut lanes = tokio::task::JoinSet::new();
        for lane in 0..self.lanes.len() {
            let this = self.clone();
            let (queue, progress) = (queue.clone(), progress.clone());
            let (bucket, token, path) = (bucket.clone(), token.to_owned(), path.to_owned());
            lanes.spawn(async move {
                while let Some((start, end, tries)) = pop(&queue) {
                    match this
                        .get_range(lane, &bucket, &token, &path, start, end)
                        .await
                    {
                        Ok(()) => progress(end - start),
                        Err(e) if e.is_retryable() && tries + 1 < this.attempts => {
                            push(&queue, (start, end, tries + 1));
                            tokio::time::sleep(backoff(tries)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            });
        }
        while let Some(joined) = lanes.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    return Err(DataError::Io {
                        path: path.display().to_string(),
                        source: std::io::Error::other(e),
                    });
                }
            }
        }
        Ok(())
    }

    async fn get_range(
        &self,
        lane: usize,
        bucket: &BucketId,
        token: &str,
        path: &Path,
        start: u64,
        end: u64,
    ) -> Result<(), DataError> {
        let http = self.lane(lane).with_bearer(token);
        let req = http
            .request(http::Method::GET, &bucket_path(&self.job, bucket))
            .header(header::RANGE, format!("bytes={start}-{}", end - 1))
            .body(body::empty())
            .map_err(|e| DataError::Corrupt {
                bucket: bucket.to_string(),
                why: e.to_string(),
            })?;
        let timeout = transfer_timeout(end - start);
        let resp = http
            .send(req, timeout)
            .await
            .map_err(self.call_err(bucket))?;
        let expected = resp
            .headers()
            .get(SHA256_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(Digest::parse);
        let data = collect_limited(resp.into_body(), end - start, self.body_idle)
            .await
            .map_err(|e| DataError::Corrupt {
                bucket: bucket.to_string(),
                why: e.to_string(),
            })?;
        if data.len() as u64 != end - start || expected.is_some_and(|d| d != Digest::of(&data)) {
            return Err(DataError::Corrupt {
                bucket: bucket.to_string(),
                why: format!("range {start}-{end} failed its check"),
            });
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .await
            .map_err(io_err(path))?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(io_err(path))?;
        file.write_all(&data).await.map_err(io_err(path))?;
        file.flush().await.map_err(io_err(path))?;
        Ok(())
    }

    /// Deletes every bucket of the job (owner clean-up).
    pub async fn delete_job(&self, token: &str) -> Result<u64, DataError> {
        let http = self.lane(0).with_bearer(token);
        let req = http
            .request(http::Method::DELETE, &job_path(&self.job))
            .body(body::empty())
            .map_err(|e| DataError::Corrupt {
                bucket: "*".into(),
                why: e.to_string(),
            })?;
        let resp = http
            .send(req, Duration::from_secs(120))
            .await
            .map_err(|source| DataError::Call {
                bucket: "*".into(),
                source,
            })?;
        let bytes = collect_limited(resp.into_body(), 64 * 1024, Duration::from_secs(30))
            .await
            .map_err(|e| DataError::Corrupt {
                bucket: "*".into(),
                why: e.to_string(),
            })?;
        let deleted: Deleted = serde_json::from_slice(&bytes).map_err(|e| DataError::Corrupt {
            bucket: "*".into(),
            why: e.to_string(),
        })?;
        Ok(deleted.buckets)
    }
}

fn meta_from_headers(
    bucket: &BucketId,
    headers: &http::HeaderMap,
) -> Result<BucketMeta, DataError> {
    let corrupt = |why: &str| DataError::Corrupt {
        bucket: bucket.to_string(),
        why: why.to_owned(),
    };
    let size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("no Content-Length"))?;
    let sha256 = headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim_matches('"')))
        .ok_or_else(|| corrupt("no ETag digest"))?;
    let receipt = headers
        .get(RECEIPT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(BucketMeta {
        size,
        sha256,
        receipt,
    })
}

/// Splits `[0, size)` into ranges of at most `step` bytes (one empty range for size 0).
fn split(size: u64, step: u64) -> Vec<(u64, u64)> {
    if size == 0 {
        return vec![(0, 0)];
    }
    (0..size.div_ceil(step))
        .map(|i| (i * step, ((i + 1) * step).min(size)))
        .collect()
}

fn pop(queue: &Mutex<VecDeque<(u64, u64, u32)>>) -> Option<(u64, u64, u32)> {
    queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
}

fn push(queue: &Mutex<VecDeque<(u64, u64, u32)>>, item: (u64, u64, u32)) {
    queue
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push_back(item);
}

fn backoff(tries: u32) -> Duration {
    Duration::from_millis(200u64 << tries.min(5))
}

/// Time allowed for one range: a minute plus what 256 KiB/s would need.
fn transfer_timeout(bytes: u64) -> Duration {
    Duration::from_secs(60 + bytes / (256 * 1024))
}

/// The length and running digest of a partly downloaded file (0 if absent).
async fn hash_existing(path: &Path) -> Result<(u64, Hasher), DataError> {
    let mut hasher = Hasher::new();
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, hasher)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = file.read(&mut buf).await.map_err(io_err(path))?;
        if k == 0 {
            return Ok((n, hasher));
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
}

async fn read_range(path: &Path, start: u64, end: u64) -> Result<Bytes, DataError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(io_err(path))?;
    let mut buf = vec![0u8; (end - start) as usize];
    file.read_exact(&mut buf).await.map_err(io_err(path))?;
    Ok(Bytes::from(buf))
}

async fn with_retry<T, F, Fut>(attempts: u32, mut op: F) -> Result<T, DataError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DataError>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && tries + 1 < attempts => {
                tracing::debug!("retrying transfer: {e}");
                tokio::time::sleep(backoff(tries)).await;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl From<DataError> for ErrorKind {
    fn from(e: DataError) -> ErrorKind {
        match e {
            DataError::Call { source, .. } => source.kind(),
            DataError::Corrupt { .. } => ErrorKind::PeerMisbehaved,
            DataError::Io { .. } => ErrorKind::BadRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything() {
        assert_eq!(split(0, 10), vec![(0, 0)]);
        assert_eq!(split(25, 10), vec![(0, 10), (10, 20), (20, 25)]);
        assert_eq!(split(20, 10), vec![(0, 10), (10, 20)]);
    }
}
