//! The job's files (`-file`, mrjob FILES), fetched once per job from the job
//! master by digest, checked, and linked into every attempt's working folder.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tormr_core::encoding::Hasher;
use tormr_core::spec::JobFile;
use tormr_net::HttpClient;
use tormr_net::body::copy_body;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("job file {name:?} has an unsafe name")]
    UnsafeName { name: String },
    #[error("fetching job file {name}: {why}")]
    Fetch { name: String, why: String },
    #[error("job file {name} does not match its digest")]
    Digest { name: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Downloads every job file into `dir`, verifying each against its digest.
pub async fn fetch_all(
    jm: &HttpClient,
    files: &[JobFile],
    dir: &Path,
    max_bytes: u64,
) -> Result<(), FileError> {
    tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
    for f in files {
        if !JobFile::name_is_safe(&f.name) {
            return Err(FileError::UnsafeName {
                name: f.name.clone(),
            });
        }
        let path = dir.join(&f.name);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_err(parent))?;
        }
        let fetch = |why: String| FileError::Fetch {
            name: f.name.clone(),
            why,
        };
        let req = jm
            .request(http::Method::GET, &format!("/v1/files/{}", f.digest))
            .body(tormr_net::body::empty())
            .map_err(|e| fetch(e.to_string()))?;
        let resp = jm
            .send(req, Duration::from_secs(60))
            .await
            .map_err(|e| fetch(e.to_string()))?;
        let mut out = tokio::fs::File::create(&path)
            .await
            .map_err(io_err(&path))?;
        let mut hasher = Hasher::new();
        copy_body(
            resp.into_body(),
            &mut out,
            f.size.min(max_bytes),
            Duration::from_secs(60),
            |d| hasher.update(d),
        )
        .await
        .map_err(|e| fetch(e.to_string()))?;
        out.flush().await.map_err(io_err(&path))?;
        if hasher.finish() != f.digest {
            return Err(FileError::Digest {
                name: f.name.clone(),
            });
        }
        let mode = if f.executable { 0o555 } else { 0o444 };
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(io_err(&path))?;
    }
    Ok(())
}

/// Makes an attempt's working folder with the job's top-level files linked in.
pub fn prepare_workdir(files_dir: &Path, workdir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(workdir).map_err(io_err(workdir))?;
    let entries = match std::fs::read_dir(files_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(files_dir)(e)),
    };
    for entry in entries.filter_map(Result::ok) {
        let link: PathBuf = workdir.join(entry.file_name());
        std::os::unix::fs::symlink(entry.path(), &link).map_err(io_err(&link))?;
    }
    Ok(())
}
