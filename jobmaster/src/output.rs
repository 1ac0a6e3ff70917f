//! The owner's result: the last step's buckets fetched, opened and written out
//! as Hadoop lays out a job's output folder (`part-00000`…, `_SUCCESS`).
//!
//! The folder is assembled beside its final name and renamed into place at the
//! end, so a failed download never leaves a folder that looks complete.

use crate::master::JobMaster;
use crate::records::BucketRef;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tormr_core::seal::BucketReader;
use tormr_core::token::Verb;
use tormr_datalayer::DataClient;
use tormr_datalayer::client::Progress;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    #[error("output folder {path} already exists; choose another -output or remove it")]
    Exists { path: String },
    #[error("downloading {bucket} failed: {why}")]
    Download { bucket: String, why: String },
    #[error("output bucket {bucket} could not be opened: {why}")]
    Open { bucket: String, why: String },
    #[error("writing {path} failed: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Refuses an output folder that already exists (checked before the job starts).
pub fn check_output_free(dir: &Path) -> Result<(), OutputError> {
    if dir.exists() {
        return Err(OutputError::Exists {
            path: dir.display().to_string(),
        });
    }
    Ok(())
}

fn partial_dir(dir: &Path, job: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    dir.with_file_name(format!(".{name}.tormr-partial-{job}"))
}

/// Downloads every output bucket of `jm` into `dir`; returns the part files.
pub async fn fetch_outputs(
    jm: &Arc<JobMaster>,
    data: &DataClient,
    dir: &Path,
    staging: &Path,
    progress: Progress,
) -> Result<Vec<PathBuf>, OutputError> {
    check_output_free(dir)?;
    let partial = partial_dir(dir, jm.job().as_str());
    let write_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| OutputError::Write { path, source }
    };
    if let Some(parent) = partial.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(write_err(parent))?;
    }
    tokio::fs::create_dir_all(&partial)
        .await
        .map_err(write_err(&partial))?;
    let result = fetch_into(jm, data, dir, &partial, staging, progress).await;
    if result.is_err() {
        // Never leave decrypted parts of a failed download lying around.
        let _ = tokio::fs::remove_dir_all(&partial).await;
    }
    result
}

async fn fetch_into(
    jm: &Arc<JobMaster>,
    data: &DataClient,
    dir: &Path,
    partial: &Path,
    staging: &Path,
    progress: Progress,
) -> Result<Vec<PathBuf>, OutputError> {
    let write_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| OutputError::Write { path, source }
    };
    let outputs = jm.outputs();
    let mut parts = Vec::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(2));
    let mut running = tokio::task::JoinSet::new();
    for (i, out) in outputs.into_iter().enumerate() {
        let part = partial.join(format!("part-{i:05}"));
        parts.push(dir.join(format!("part-{i:05}")));
        let (jm, data, progress, staging, slots) = (
            jm.clone(),
            data.clone(),
            progress.clone(),
            staging.to_owned(),
            slots.clone(),
        );
        running.spawn(async move {
            let _permit = slots.acquire_owned().await;
            fetch_one(&jm, &data, &out, &staging, &part, progress).await
        });
    }
    while let Some(done) = running.join_next().await {
        done.map_err(|e| OutputError::Download {
            bucket: "-".into(),
            why: e.to_string(),
        })??;
    }
    let success = partial.join("_SUCCESS");
    tokio::fs::write(&success, b"")
        .await
        .map_err(write_err(&success))?;
    tokio::fs::rename(partial, dir)
        .await
        .map_err(write_err(dir))?;
    Ok(parts)
}

async fn fetch_one(
    jm: &JobMaster,
    data: &DataClient,
    out: &BucketRef,
    staging: &Path,
    part: &Path,
    progress: Progress,
) -> Result<(), OutputError> {
    let sealed = staging.join(format!("{}.sealed", out.bucket));
    let token = jm.mint(&out.bucket, Verb::Get);
    data.get_to_file(&out.bucket, &token, &sealed, progress)
        .await
        .map_err(|e| OutputError::Download {
            bucket: out.bucket.to_string(),
            why: e.to_string(),
        })?;
    let (job, out, sealed_c, part_c) = (
        jm.job().clone(),
        out.clone(),
        sealed.clone(),
        part.to_owned(),
    );
    tokio::task::spawn_blocking(move || -> Result<(), OutputError> {
        let open_err = |why: String| OutputError::Open {
            bucket: out.bucket.to_string(),
            why,
        };
        let file = std::fs::File::open(&sealed_c).map_err(|e| open_err(e.to_string()))?;
        let mut reader =
            BucketReader::with_digest(std::io::BufReader::new(file), &out.key, &job, &out.bucket)
                .map_err(|e| open_err(e.to_string()))?;
        let mut sink =
            std::io::BufWriter::new(std::fs::File::create(&part_c).map_err(|source| {
                OutputError::Write {
                    path: part_c.display().to_string(),
                    source,
                }
            })?);
        std::io::copy(&mut reader, &mut sink).map_err(|e| open_err(e.to_string()))?;
        std::io::Write::flush(&mut sink).map_err(|source| OutputError::Write {
            path: part_c.display().to_string(),
            source,
        })?;
        if out.plain_digest.is_none() || reader.digest() != out.plain_digest {
            return Err(open_err(
                "its content does not match the digest the worker reported".into(),
            ));
        }
        Ok(())
    })
    .await
    .map_err(|e| OutputError::Download {
        bucket: "-".into(),
        why: e.to_string(),
    })??;
    let _ = tokio::fs::remove_file(&sealed).await;
    Ok(())
}
