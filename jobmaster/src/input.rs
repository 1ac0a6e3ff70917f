//! The owner's input: found, cut into line-aligned slices, sealed and uploaded.
//!
//! Slices are planned by seeking near each nominal boundary and reading forward
//! to the next newline, so planning a large file costs a few small reads; each
//! slice is then streamed from the file through the sealer, so memory stays
//! small however large the buckets are. Sealing runs on as many threads as
//! asked, uploads overlap sealing, and each bucket becomes a map task as soon
//! as it is stored, so mapping starts before the upload ends.

use crate::master::JobMaster;
use crate::records::{BucketRef, Source};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tormr_core::ids::BucketId;
use tormr_core::seal::{BucketKey, BucketWriter};
use tormr_core::token::Verb;
use tormr_datalayer::DataClient;
use tormr_datalayer::client::Progress;

/// Why the input could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("input {path} does not exist; check the -input path")]
    Missing { path: String },
    #[error("could not read input {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("could not stage sealed bucket {path}: {source}")]
    Stage {
        path: String,
        source: std::io::Error,
    },
    #[error("uploading bucket {bucket} failed: {why}")]
    Upload { bucket: String, why: String },
    #[error("the job master could not record bucket {bucket}: {why}")]
    Record { bucket: String, why: String },
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub path: PathBuf,
    /// Its name as workers see it: relative to the input argument's parent,
    /// so the owner's home folder never travels.
    pub name: String,
    pub size: u64,
}

fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Expands `-input` arguments into files, as Hadoop does: folders recursively,
/// skipping names that start with `.` or `_`, in name order.
pub fn list_inputs(paths: &[PathBuf]) -> Result<Vec<InputFile>, InputError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|_| InputError::Missing {
            path: path.display().to_string(),
        })?;
        // `-input .` or `-input dir/..` name the folder itself.
        let named = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let base = named
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input".into());
        if meta.is_file() {
            out.push(InputFile {
                path: path.clone(),
                name: base,
                size: meta.len(),
            });
        } else {
            walk(path, &base, &mut out)?;
        }
    }
    Ok(out)
}

fn walk(dir: &Path, name: &str, out: &mut Vec<InputFile>) -> Result<(), InputError> {
    let read_err = |source| InputError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if hidden(&file_name) {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|source| InputError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let child = format!("{name}/{file_name}");
        if meta.is_dir() {
            walk(&path, &child, out)?;
        } else if meta.is_file() {
            out.push(InputFile {
                path,
                name: child,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

/// A line-aligned slice of one input file: one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub file: usize,
    pub offset: u64,
    pub length: u64,
}

/// Cuts every file into slices of about `bucket_bytes`, each ending after a
/// newline (a line longer than a bucket gets a bucket of its own).
pub fn plan_slices(files: &[InputFile], bucket_bytes: u64) -> Result<Vec<Slice>, InputError> {
    let mut slices = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let read_err = |source| InputError::Read {
            path: f.path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(&f.path).map_err(read_err)?;
        let mut start = 0u64;
        while start < f.size {
            let end = if start + bucket_bytes >= f.size {
                f.size
            } else {
                next_line_end(&mut file, start + bucket_bytes, f.size).map_err(read_err)?
            };
            slices.push(Slice {
                file: i,
                offset: start,
                length: end - start,
            });
            start = end;
        }
    }
    Ok(slices)
}

/// The offset just past the first newline at or after `from - 1`.
fn next_line_end(file: &mut std::fs::File, from: u64, size: u64) -> std::io::Result<u64> {
    let mut pos = from.saturating_sub(1);
    file.seek(SeekFrom::Start(pos))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(size);
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
}

/// Seals one slice into `out`; returns the sealed bucket's reference.
pub fn seal_slice(
    file: &InputFile,
    slice: &Slice,
    job: &tormr_core::ids::JobId,
    bucket: &BucketId,
    out: &Path,
    level: i32,
) -> Result<BucketRef, InputError> {
    let read_err = |source| InputError::Read {
        path: file.path.display().to_string(),
        source,
    };
    let stage_err = |source| InputError::Stage {
        path: out.display().to_string(),
        source,
    };
    let mut src = std::fs::File::open(&file.path).map_err(read_err)?;
    src.seek(SeekFrom::Start(slice.offset)).map_err(read_err)?;
    let mut src = BufReader::with_capacity(1 << 20, src.take(slice.length));
    let key = BucketKey::random();
    let sink =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).map_err(stage_err)?);
    // Input plaintext is never compared with anything: skip hashing it.
    let mut writer = BucketWriter::with_level(sink, &key, job, bucket, level)
        .map_err(stage_err)?
        .without_digest();
    let mut records = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        records += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        std::io::Write::write_all(&mut writer, &buf[..n]).map_err(stage_err)?;
    }
    let (mut sink, summary) = writer.finish().map_err(stage_err)?;
    std::io::Write::flush(&mut sink).map_err(stage_err)?;
    Ok(BucketRef {
        bucket: bucket.clone(),
        key,
        sealed_bytes: summary.sealed_bytes,
        plain_bytes: summary.plain_bytes,
        plain_digest: summary.plain_digest,
        canonical_digest: None,
        records,
        source: Some(Source {
            name: file.name.clone(),
            offset: slice.offset,
            length: slice.length,
        }),
    })
}

/// Seals and uploads every slice, `parallel` at a time, adding each to the
/// job master as soon as it is stored. `progress` sees plaintext bytes done.
/// Which slices an upload still has to send, and under which names.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadPlan {
    /// Slices before this one are already uploaded and recorded.
    pub first: u32,
    /// How many times the job was resumed: a resumed upload names its
    /// buckets apart, since a crashed run may have stored a bucket under the
    /// old name with a key nobody kept (stored buckets never change).
    pub epoch: u32,
}

#[allow(clippy::too_many_arguments)]
pub async fn upload_inputs(
    jm: &Arc<JobMaster>,
    data: &DataClient,
    files: Arc<Vec<InputFile>>,
    slices: Vec<Slice>,
    plan: UploadPlan,
    staging: &Path,
    parallel: usize,
    progress: Progress,
) -> Result<u32, InputError> {
    let count = slices.len() as u32;
    let slots = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    // Buckets become map tasks in slice order, whatever order their uploads
    // finish in, so task i always reads slice i and map-only output is
    // reproducible.
    let (next, _) = tokio::sync::watch::channel(plan.first);
    let next = Arc::new(next);
    let mut running = tokio::task::JoinSet::new();
    for (i, slice) in slices.into_iter().enumerate().skip(plan.first as usize) {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| InputError::Upload {
                bucket: "-".into(),
                why: e.to_string(),
            })?;
        let (jm, data, files, next) = (jm.clone(), data.clone(), files.clone(), next.clone());
        let staged = staging.join(format!("in-{i:05}.sealed"));
        let progress = progress.clone();
        running.spawn(async move {
            let _permit = permit;
            let bucket = match plan.epoch {
                0 => BucketId::input(i as u32),
                epoch => BucketId::input_resumed(i as u32, epoch),
            };
            let job = jm.job().clone();
            let level = jm.spec().limits.compression_level;
            let (b, s) = (bucket.clone(), staged.clone());
            let bref = tokio::task::spawn_blocking(move || {
                seal_slice(&files[slice.file], &slice, &job, &b, &s, level)
            })
            .await
            .map_err(|e| InputError::Stage {
                path: staged.display().to_string(),
                source: std::io::Error::other(e),
            })??;
            let token = jm.mint(&bucket, Verb::Put);
            data.put_file(&bucket, &token, &staged, Arc::new(|_| {}))
                .await
                .map_err(|e| InputError::Upload {
                    bucket: bucket.to_string(),
                    why: e.to_string(),
                })?;
            let _ = tokio::fs::remove_file(&staged).await;
            progress(bref.plain_bytes);
            drop(_permit);
            let mut turn = next.subscribe();
            let _ = turn.wait_for(|n| *n == i as u32).await;
            let added = jm.add_input(bref).await.map_err(|e| InputError::Record {
                bucket: bucket.to_string(),
                why: e.to_string(),
            });
            next.send_modify(|n| *n += 1);
            added
        });
        // Surface failures early instead of sealing everything first.
        while let Some(done) = running.try_join_next() {
            flatten(done)?;
        }
    }
    while let Some(done) = running.join_next().await {
        flatten(done)?;
    }
    Ok(count)
}

fn flatten(
    joined: Result<Result<(), InputError>, tokio::task::JoinError>,
) -> Result<(), InputError> {
    joined.map_err(|e| InputError::Upload {
        bucket: "-".into(),
        why: e.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(dir: &Path, name: &str, data: &[u8]) -> InputFile {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(data)
            .unwrap();
        InputFile {
            path,
            name: name.into(),
            size: data.len() as u64,
        }
    }

    fn read_slice(f: &InputFile, s: &Slice) -> Vec<u8> {
        let all = std::fs::read(&f.path).unwrap();
        all[s.offset as usize..(s.offset + s.length) as usize].to_vec()
    }

    #[test]
    fn slices_are_line_aligned_and_cover_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..500)
            .flat_map(|i| format!("line number {i}\n").into_bytes())
            .collect();
        let f = file_with(dir.path(), "a.txt", &text);
        let slices = plan_slices(std::slice::from_ref(&f), 100).unwrap();
        let mut joined = Vec::new();
        for s in &slices {
            let part = read_slice(&f, s);
            assert!(part.ends_with(b"\n"), "slice must end at a newline");
            joined.extend(part);
        }
        assert_eq!(joined, text);
        assert!(slices.len() > 50);
    }

    #[test]
    fn long_lines_and_missing_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = vec![b'x'; 1000];
        text.extend_from_slice(b"\nshort\nlast-without-newline");
        let f = file_with(dir.path(), "b.txt", &text);
        let slices = plan_slices(std::slice::from_ref(&f), 10).unwrap();
        assert_eq!(
            read_slice(&f, &slices[0]).len(),
            1001,
            "a long line is one bucket"
        );
        let joined: Vec<u8> = slices.iter().flat_map(|s| read_slice(&f, s)).collect();
        assert_eq!(joined, text);
        let empty = file_with(dir.path(), "empty.txt", b"");
        assert!(plan_slices(&[empty], 10).unwrap().is_empty());
    }

    #[test]
    fn folders_are_walked_without_hidden_files_or_owner_paths() {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs");
        std::fs::create_dir_all(docs.join("sub")).unwrap();
        std::fs::write(docs.join("b.txt"), "b").unwrap();
        std::fs::write(docs.join("a.txt"), "a").unwrap();
        std::fs::write(docs.join("_SUCCESS"), "").unwrap();
        std::fs::write(docs.join(".crc"), "").unwrap();
        std::fs::write(docs.join("sub/c.txt"), "c").unwrap();
        let files = list_inputs(&[docs]).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["docs/a.txt", "docs/b.txt", "docs/sub/c.txt"]);
        assert!(matches!(
            list_inputs(&[dir.path().join("nope")]),
            Err(InputError::Missing { .. })
        ));
    }
}
