//! One datum of a Pachyderm pipeline as a map task: the input bucket is a
//! tar of the datum's files, unpacked and mounted read-only at
//! `/pfs/<input>`; the pipeline's command runs directly (never through a
//! shell) with its `stdin` lines; what it leaves in `/pfs/out` is packed as
//! a tar, in path order, and sealed as the task's output, which the owner
//! merges into her output folder.

use crate::executor::PfsMounts;
use crate::run::run_filter;
use crate::shuffle::collector::seal_with;
use crate::task::{TaskDone, TaskEnv, TaskFailed, judge, open_input, spec};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tormr_core::counters::{FRAMEWORK, TORMR};
use tormr_core::spec::join_words;
use tormr_core::spec::pachyderm::PfsTask;
use tormr_core::wire::job::TaskAssignment;

/// Most bytes a datum may leave in `/pfs/out`.
const MAX_OUTPUT_BYTES: u64 = 4 << 30;

pub fn run_datum(
    env: &TaskEnv,
    task: &TaskAssignment,
    path: &Path,
    pfs: &PfsTask,
    deadline: Instant,
) -> Result<TaskDone, TaskFailed> {
    let input = task
        .inputs
        .first()
        .ok_or_else(|| TaskFailed::ours("a datum needs one input bucket"))?;
    let output = task
        .outputs
        .first()
        .ok_or_else(|| TaskFailed::ours("a datum needs an output bucket"))?;
    let root = env.scratch.join("pfs");
    let (in_dir, out_dir) = (root.join("in"), root.join("out"));
    let result = prepare(env, input, path, &in_dir, &out_dir).and_then(|files| {
        let mut exec = spec(env, task, &join_words(&pfs.cmd), deadline);
        exec.argv = Some(pfs.cmd.clone());
        exec.pfs = Some(PfsMounts {
            input_name: pfs.input_name.clone(),
            input: in_dir.clone(),
            out: out_dir.clone(),
        });
        let stdin: String = pfs.stdin.iter().map(|l| format!("{l}\n")).collect();
        let ran = run_filter(
            &env.rt,
            env.executor.as_ref(),
            &exec,
            &env.cancel,
            |w| w.write_all(stdin.as_bytes()),
            // Pachyderm's stdout is the pipeline's log, not its output.
            |r| io::copy(r, &mut io::sink()),
        )
        .map_err(|e| TaskFailed::ours(e.to_string()))?;
        let mut counters = ran.stderr.counters.clone();
        if let Some(failed) = judge(&ran, "pipeline command", &exec.command) {
            return Err(failed);
        }
        let written = seal_with(output, env.seal_to(task), |w| pack(&out_dir, w))
            .map_err(|e| TaskFailed::ours(format!("packing /pfs/out: {e}")))?;
        counters.add(FRAMEWORK, "Map input records", files as i64);
        counters.add(TORMR, "Map input bytes", input.plain_bytes as i64);
        counters.add(FRAMEWORK, "Map output records", written.0.records as i64);
        Ok(TaskDone {
            written: vec![written],
            counters,
        })
    });
    // Files the container wrote belong to its user; a worker that is not
    // root may be unable to remove them all: the job's folder goes anyway.
    if let Err(e) = std::fs::remove_dir_all(&root) {
        tracing::debug!("removing a datum's folders: {e}");
    }
    result
}

/// Unpacks the datum into `in_dir` and makes an empty `out_dir` the job's
/// user can write; returns the number of input files.
fn prepare(
    env: &TaskEnv,
    input: &tormr_core::wire::job::InputBucket,
    path: &Path,
    in_dir: &Path,
    out_dir: &Path,
) -> Result<u64, TaskFailed> {
    let io_err = |what: &str, e: io::Error| TaskFailed::ours(format!("{what}: {e}"));
    std::fs::create_dir_all(in_dir).map_err(|e| io_err("making the datum's folder", e))?;
    std::fs::create_dir_all(out_dir).map_err(|e| io_err("making /pfs/out", e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(out_dir, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| io_err("opening /pfs/out to the job's user", e))?;
    let source = open_input(env, input, path)?;
    let mut archive = tar::Archive::new(source);
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    let mut files = 0u64;
    // `unpack_in` refuses any entry that would land outside the folder.
    let entries = archive
        .entries()
        .map_err(|e| io_err("reading the datum", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err("reading the datum", e))?;
        if entry.header().entry_type().is_file() {
            files += 1;
        }
        let inside = entry
            .unpack_in(in_dir)
            .map_err(|e| io_err("unpacking the datum", e))?;
        if !inside {
            return Err(TaskFailed::ours(
                "the datum holds a path outside its folder; refused",
            ));
        }
    }
    Ok(files)
}

/// Writes every regular file under `dir` into a tar, in path order;
/// returns how many.
fn pack(dir: &Path, out: &mut dyn Write) -> io::Result<u64> {
    let mut files = Vec::new();
    list(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut total = 0u64;
    let mut tar = tar::Builder::new(out);
    for rel in &files {
        let path = dir.join(rel);
        let mut file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        total += size;
        if total > MAX_OUTPUT_BYTES {
            return Err(io::Error::other(format!(
                "the datum left more than {} GiB in /pfs/out",
                MAX_OUTPUT_BYTES >> 30
            )));
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, rel, &mut file)?;
    }
    tar.finish()?;
    Ok(files.len() as u64)
}

fn list(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            list(root, &path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
        // Symlinks the code made are not output: a link could point
        // anywhere on the worker's disk.
    }
    Ok(())
}
