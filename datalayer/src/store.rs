//! Where sealed buckets live.
//!
//! [`BucketStore`] is the seam for other backends (an object store); [`DirStore`]
//! keeps each job in a folder: finished buckets as files with a small JSON
//! sidecar (size, SHA-256), uploads in progress under `.staging/` with the set of
//! ranges received so far, so an interrupted upload resumes after a restart.

use crate::ranges::RangeSet;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWrite};
use tormr_core::encoding::{Digest, Hasher};
use tormr_core::ids::{BucketId, JobId};

/// A finished bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketMeta {
    pub size: u64,
    pub sha256: Digest,
}

/// The state of an upload after a range arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Partial { received: u64, total: u64 },
    Complete(BucketMeta),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreIoError {
    #[error("bucket {bucket} is not stored")]
    NotFound { bucket: String },
    #[error("bucket {bucket} is already stored and cannot be changed")]
    AlreadyStored { bucket: String },
    #[error("bucket {bucket}: {why}")]
    Mismatch { bucket: String, why: String },
    #[error("the data layer's disk failed on {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreIoError {
    let what = what.into();
    move |source| StoreIoError::Io { what, source }
}

pub type BoxReader = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;

#[async_trait]
pub trait BucketStore: Send + Sync + 'static {
    /// Size and digest of a finished bucket.
    async fn meta(
        &self,
        job: &JobId,
        bucket: &BucketId,
    ) -> Result<Option<BucketMeta>, StoreIoError>;
    /// Reads `[start, end)` of a finished bucket.
    async fn read(
        &self,
        job: &JobId,
        bucket: &BucketId,
        start: u64,
        end: u64,
    ) -> Result<BoxReader, StoreIoError>;
    /// A writer positioned at `offset` of the bucket's staging area. `total`, if
    /// known, must agree with earlier ranges of the same upload.
    async fn stage(
        &self,
        job: &JobId,
        bucket: &BucketId,
        offset: u64,
        total: Option<u64>,
    ) -> Result<BoxWriter, StoreIoError>;
    /// Records that `[start, end)` of an upload of `total` bytes is written;
    /// finishes the bucket once every byte is in. `whole` is the bucket's
    /// digest when this one range was the whole bucket (saves re-reading it).
    async fn commit(
        &self,
        job: &JobId,
        bucket: &BucketId,
        start: u64,
        end: u64,
        total: u64,
        whole: Option<Digest>,
    ) -> Result<Progress, StoreIoError>;
    /// Removes every bucket of a job; returns how many finished buckets went.
    async fn delete_job(&self, job: &JobId) -> Result<u64, StoreIoError>;
}

/// Buckets as files under one folder.
pub struct DirStore {
    root: PathBuf,
    /// Serialises range bookkeeping per bucket; data writes run in parallel.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Staging {
    total: u64,
    ranges: RangeSet,
}

impl DirStore {
    pub fn open(root: &Path) -> Result<Self, StoreIoError> {
        std::fs::create_dir_all(root).map_err(io_err(format!("creating {}", root.display())))?;
        Ok(DirStore {
            root: root.to_owned(),
            locks: Mutex::new(HashMap::new()),
        })
    }

    fn job_dir(&self, job: &JobId) -> PathBuf {
        self.root.join(job.as_str())
    }

    fn final_path(&self, job: &JobId, bucket: &BucketId) -> PathBuf {
        self.job_dir(job).join(bucket.as_str())
    }

    fn meta_path(&self, job: &JobId, bucket: &BucketId) -> PathBuf {
        self.job_dir(job)
            .join(".meta")
            .join(format!("{bucket}.json"))
    }

    fn staging_path(&self, job: &JobId, bucket: &BucketId) -> PathBuf {
        self.job_dir(job).join(".staging").join(bucket.as_str())
    }

    fn staging_state_path(&self, job: &JobId, bucket: &BucketId) -> PathBuf {
        self.job_dir(job)
            .join(".staging")
            .join(format!("{bucket}.ranges"))
    }

    fn lock_for(&self, job: &JobId, bucket: &BucketId) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{job}/{bucket}");
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key).or_default().clone()
    }

    fn forget_lock(&self, job: &JobId, bucket: &BucketId) {
        let key = format!("{job}/{bucket}");
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.remove(&key);
    }

    async fn read_staging(
        &self,
        job: &JobId,
        bucket: &BucketId,
    ) -> Result<Option<Staging>, StoreIoError> {
        let path = self.staging_state_path(job, bucket);
        match tokio::fs::read(&path).await {
            Ok(raw) => Ok(serde_json::from_slice(&raw).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading upload state")(e)),
        }
    }

    async fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), StoreIoError> {
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(io_err("writing bucket metadata"))?;
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(io_err("writing bucket metadata"))
    }

    /// Hashes (unless the digest is known), syncs and moves a complete upload into place.
    async fn finish(
        &self,
        job: &JobId,
        bucket: &BucketId,
        total: u64,
        known: Option<Digest>,
    ) -> Result<BucketMeta, StoreIoError> {
        let staged = self.staging_path(job, bucket);
        let for_hash = staged.clone();
        let sha256 = tokio::task::spawn_blocking(move || -> std::io::Result<Digest> {
            let mut file = std::fs::File::open(&for_hash)?;
            if let Some(d) = known {
                file.sync_all()?;
                return Ok(d);
            }
            let mut hasher = Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            file.sync_all()?;
            Ok(hasher.finish())
        })
        .await
        .map_err(|e| StoreIoError::Io {
            what: "hashing an upload".into(),
            source: std::io::Error::other(e),
        })?
        .map_err(io_err("hashing an upload"))?;
        let meta = BucketMeta {
            size: total,
            sha256,
        };
        let meta_path = self.meta_path(job, bucket);
        if let Some(parent) = meta_path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_err("creating the metadata folder"))?;
        }
        Self::write_json_atomic(&meta_path, &meta).await?;
        tokio::fs::rename(&staged, self.final_path(job, bucket))
            .await
            .map_err(io_err("moving an upload into place"))?;
        let _ = tokio::fs::remove_file(self.staging_state_path(job, bucket)).await;
        Ok(meta)
    }
}

#[async_trait]
impl BucketStore for DirStore {
    async fn meta(
        &self,
        job: &JobId,
        bucket: &BucketId,
    ) -> Result<Option<BucketMeta>, StoreIoError> {
        if !tokio::fs::try_exists(self.final_path(job, bucket))
            .await
            .unwrap_or(false)
        {
            return Ok(None);
        }
        match tokio::fs::read(self.meta_path(job, bucket)).await {
            Ok(raw) => Ok(serde_json::from_slice(&raw).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading bucket metadata")(e)),
        }
    }

    async fn read(
        &self,
        job: &JobId,
        bucket: &BucketId,
        start: u64,
        end: u64,
    ) -> Result<BoxReader, StoreIoError> {
        use tokio::io::AsyncReadExt;
        let mut file = match tokio::fs::File::open(self.final_path(job, bucket)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreIoError::NotFound {
                    bucket: bucket.to_string(),
                });
            }
            Err(e) => return Err(io_err("opening a bucket")(e)),
        };
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(io_err("seeking in a bucket"))?;
        Ok(Box::new(file.take(end.saturating_sub(start))))
    }

    async fn stage(
        &self,
        job: &JobId,
        bucket: &BucketId,
        offset: u64,
        total: Option<u64>,
    ) -> Result<BoxWriter, StoreIoError> {
        if self.meta(job, bucket).await?.is_some() {
            return Err(StoreIoError::AlreadyStored {
                bucket: bucket.to_string(),
            });
        }
        if let (Some(total), Some(staging)) = (total, self.read_staging(job, bucket).await?)
            && staging.total != total
        {
            return Err(StoreIoError::Mismatch {
                bucket: bucket.to_string(),
                why: format!(
                    "an upload of {} bytes is in progress; this one says {total}",
                    staging.total
                ),
            });
        }
        let path = self.staging_path(job, bucket);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_err("creating the staging folder"))?;
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .await
            .map_err(io_err("opening an upload"))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io_err("seeking in an upload"))?;
        Ok(Box::new(file))
    }

    async fn commit(
        &self,
        job: &JobId,
        bucket: &BucketId,
        start: u64,
        end: u64,
        total: u64,
        whole: Option<Digest>,
    ) -> Result<Progress, StoreIoError> {
        let lock = self.lock_for(job, bucket);
        let _guard = lock.lock().await;
        if let Some(meta) = self.meta(job, bucket).await? {
            return Ok(Progress::Complete(meta));
        }
        let mut staging = self.read_staging(job, bucket).await?.unwrap_or(Staging {
            total,
            ranges: RangeSet::new(),
        });
        if staging.total != total {
            return Err(StoreIoError::Mismatch {
                bucket: bucket.to_string(),
                why: format!(
                    "an upload of {} bytes is in progress; this one says {total}",
                    staging.total
                ),
            });
        }
        staging.ranges.insert(start, end);
        if staging.ranges.is_complete(total) {
            // A shorter staged file than `total` can only be a zero-length bucket.
            if total == 0 {
                let _ = self.stage(job, bucket, 0, Some(0)).await?;
            }
            let known = if start == 0 && end == total {
                whole
            } else {
                None
            };
            let meta = self.finish(job, bucket, total, known).await?;
            drop(_guard);
            self.forget_lock(job, bucket);
            return Ok(Progress::Complete(meta));
        }
        Self::write_json_atomic(&self.staging_state_path(job, bucket), &staging).await?;
        Ok(Progress::Partial {
            received: staging.ranges.covered(),
            total,
        })
    }

    async fn delete_job(&self, job: &JobId) -> Result<u64, StoreIoError> {
        let dir = self.job_dir(job);
        let mut count = 0u64;
        match tokio::fs::read_dir(&dir).await {
            Ok(mut entries) => {
                while let Ok(Some(entry)) = entries.next_entry().await {
                    if entry
                        .file_type()
                        .await
                        .map(|t| t.is_file())
                        .unwrap_or(false)
                    {
                        count += 1;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("listing a job's buckets")(e)),
        }
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(io_err("deleting a job's buckets"))?;
        Ok(count)
    }
}
