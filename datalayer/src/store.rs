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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tormr_core::encoding::Digest;
use tormr_core::ids::{BucketId, JobId};

/// A finished bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketMeta {
    pub size: u64,
    pub sha256: Digest,
    /// The data layer's receipt, as a client read it from an answer; the
    /// store itself never keeps one (the secret can change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
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
    /// Stores a small bucket sent whole, whose `digest` is known, in one
    /// step: what [`stage`](Self::stage) then [`commit`](Self::commit) of the
    /// whole range would do.
    async fn put_whole(
        &self,
        job: &JobId,
        bucket: &BucketId,
        data: bytes::Bytes,
        digest: Digest,
    ) -> Result<BucketMeta, StoreIoError>;
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

    /// The paths of one bucket's files.
    fn files(&self, job: &JobId, bucket: &BucketId) -> BucketFiles {
        BucketFiles {
            done: self.final_path(job, bucket),
            meta: self.meta_path(job, bucket),
            staged: self.staging_path(job, bucket),
            ranges: self.staging_state_path(job, bucket),
        }
    }
}

/// Where one bucket's files live.
struct BucketFiles {
    /// The finished bucket.
    done: PathBuf,
    /// Its size and digest.
    meta: PathBuf,
    /// The upload in progress.
    staged: PathBuf,
    /// The ranges of the upload received so far.
    ranges: PathBuf,
}

/// Runs a piece of file work on the blocking pool. Each piece does all its
/// steps in one go: a hop to the pool and back per step is what a busy
/// data layer would otherwise spend its time on.
async fn on_disk<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreIoError> + Send + 'static,
) -> Result<T, StoreIoError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreIoError::Io {
            what: "a disk task".into(),
            source: std::io::Error::other(e),
        })?
}

impl BucketFiles {
    fn meta(&self) -> Result<Option<BucketMeta>, StoreIoError> {
        if !self.done.exists() {
            return Ok(None);
        }
        match std::fs::read(&self.meta) {
            Ok(raw) => Ok(serde_json::from_slice(&raw).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading bucket metadata")(e)),
        }
    }

    fn staging(&self) -> Result<Option<Staging>, StoreIoError> {
        match std::fs::read(&self.ranges) {
            Ok(raw) => Ok(serde_json::from_slice(&raw).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading upload state")(e)),
        }
    }

    /// The upload in progress, if any, refusing one of another size.
    fn staging_of(&self, bucket: &BucketId, total: u64) -> Result<Option<Staging>, StoreIoError> {
        match self.staging()? {
            Some(staging) if staging.total != total => Err(StoreIoError::Mismatch {
                bucket: bucket.to_string(),
                why: format!(
                    "an upload of {} bytes is in progress; this one says {total}",
                    staging.total
                ),
            }),
            staging => Ok(staging),
        }
    }

    fn refuse_stored(&self, bucket: &BucketId) -> Result<(), StoreIoError> {
        match self.meta()? {
            Some(_) => Err(StoreIoError::AlreadyStored {
                bucket: bucket.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The staging file, opened for writing at `offset`.
    fn open_staged(&self, offset: u64) -> Result<std::fs::File, StoreIoError> {
        use std::io::Seek;
        if let Some(parent) = self.staged.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating the staging folder"))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.staged)
            .map_err(io_err("opening an upload"))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .map_err(io_err("seeking in an upload"))?;
        Ok(file)
    }

    /// Hashes (unless the digest is known), syncs and moves a complete
    /// upload into place.
    fn finish(&self, total: u64, known: Option<Digest>) -> Result<BucketMeta, StoreIoError> {
        let sha256 = sync_and_hash(&self.staged, known).map_err(io_err("hashing an upload"))?;
        let meta = BucketMeta {
            size: total,
            sha256,
            receipt: None,
        };
        if let Some(parent) = self.meta.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating the metadata folder"))?;
        }
        // No temporary file and rename for the metadata: a bucket counts as
        // stored only once `done` exists, and that rename comes after; if a
        // power cut still tears the metadata, the bucket reads as not stored
        // and its upload can be made again. One file creation fewer per
        // bucket is much of a small bucket's cost on ext4.
        std::fs::write(&self.meta, serde_json::to_vec(&meta).unwrap_or_default())
            .map_err(io_err("writing bucket metadata"))?;
        std::fs::rename(&self.staged, &self.done).map_err(io_err("moving an upload into place"))?;
        let _ = std::fs::remove_file(&self.ranges);
        Ok(meta)
    }
}

fn sync_and_hash(path: &Path, known: Option<Digest>) -> std::io::Result<Digest> {
    let file = std::fs::File::open(path)?;
    let digest = match known {
        Some(d) => d,
        None => Digest::of_reader(&file)?,
    };
    file.sync_all()?;
    Ok(digest)
}

fn write_json_atomic(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(value).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

#[async_trait]
impl BucketStore for DirStore {
    async fn meta(
        &self,
        job: &JobId,
        bucket: &BucketId,
    ) -> Result<Option<BucketMeta>, StoreIoError> {
        let files = self.files(job, bucket);
        on_disk(move || files.meta()).await
    }

    async fn read(
        &self,
        job: &JobId,
        bucket: &BucketId,
        start: u64,
        end: u64,
    ) -> Result<BoxReader, StoreIoError> {
        use tokio::io::AsyncReadExt;
        let path = self.final_path(job, bucket);
        let name = bucket.to_string();
        let file = on_disk(move || {
            use std::io::Seek;
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreIoError::NotFound { bucket: name });
                }
                Err(e) => return Err(io_err("opening a bucket")(e)),
            };
            file.seek(std::io::SeekFrom::Start(start))
                .map_err(io_err("seeking in a bucket"))?;
            Ok(file)
        })
        .await?;
        let file = tokio::fs::File::from_std(file);
        Ok(Box::new(file.take(end.saturating_sub(start))))
    }

    async fn stage(
        &self,
        job: &JobId,
        bucket: &BucketId,
        offset: u64,
        total: Option<u64>,
    ) -> Result<BoxWriter, StoreIoError> {
        let files = self.files(job, bucket);
        let bucket = bucket.clone();
        let file = on_disk(move || {
            files.refuse_stored(&bucket)?;
            if let Some(total) = total {
                files.staging_of(&bucket, total)?;
            }
            files.open_staged(offset)
        })
        .await?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
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
        let guard = lock.lock().await;
        let files = self.files(job, bucket);
        let name = bucket.clone();
        let progress = on_disk(move || {
            if let Some(meta) = files.meta()? {
                return Ok(Progress::Complete(meta));
            }
            let mut staging = files.staging_of(&name, total)?.unwrap_or(Staging {
                total,
                ranges: RangeSet::new(),
            });
            staging.ranges.insert(start, end);
            if !staging.ranges.is_complete(total) {
                write_json_atomic(&files.ranges, &staging)
                    .map_err(io_err("writing bucket metadata"))?;
                return Ok(Progress::Partial {
                    received: staging.ranges.covered(),
                    total,
                });
            }
            // A shorter staged file than `total` can only be a zero-length bucket.
            if total == 0 {
                files.open_staged(0)?;
            }
            let known = (start == 0 && end == total).then_some(whole).flatten();
            files.finish(total, known).map(Progress::Complete)
        })
        .await?;
        drop(guard);
        if matches!(progress, Progress::Complete(_)) {
            self.forget_lock(job, bucket);
        }
        Ok(progress)
    }

    /// All in one trip to the blocking pool: a small bucket costs a handful
    /// of file operations, and the hops between them would cost more.
    async fn put_whole(
        &self,
        job: &JobId,
        bucket: &BucketId,
        data: bytes::Bytes,
        digest: Digest,
    ) -> Result<BucketMeta, StoreIoError> {
        let lock = self.lock_for(job, bucket);
        let guard = lock.lock().await;
        let files = self.files(job, bucket);
        let name = bucket.clone();
        let meta = on_disk(move || {
            files.refuse_stored(&name)?;
            let total = data.len() as u64;
            files.staging_of(&name, total)?;
            let mut file = files.open_staged(0)?;
            std::io::Write::write_all(&mut file, &data).map_err(io_err("writing an upload"))?;
            file.set_len(total).map_err(io_err("writing an upload"))?;
            drop(file);
            files.finish(total, Some(digest))
        })
        .await?;
        drop(guard);
        self.forget_lock(job, bucket);
        Ok(meta)
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
