//! Executors run job code: a command line fed on stdin, read on stdout.
//!
//! The [`Executor`] trait is the seam between the task logic (which only sees
//! byte streams) and how code is isolated: [`process::ProcessExecutor`] runs a
//! child process (only for the volunteer's own jobs); [`docker::DockerExecutor`]
//! runs it in a locked-down container, the sandbox for strangers' jobs.

pub mod docker;
mod kept;
pub mod process;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tormr_core::wire::bulletin::ExecutorKind;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// A shell command line, as Streaming's `-mapper` takes it.
    pub command: String,
    pub env: BTreeMap<String, String>,
    /// The attempt's working directory (job files are linked into it).
    pub workdir: PathBuf,
    /// The job's files themselves (a container mounts them read-only).
    pub files: PathBuf,
    /// Scratch space for the task (`TMPDIR`).
    pub tmpdir: PathBuf,
    /// Wall-clock limit; the process is killed after it.
    pub timeout: Duration,
    /// Run these words directly instead of `command` (a Pachyderm `cmd`,
    /// which never goes through a shell).
    pub argv: Option<Vec<String>>,
    /// A Pachyderm datum's folders, mounted at `/pfs/<name>` and `/pfs/out`.
    pub pfs: Option<PfsMounts>,
}

/// Where a datum's input and output live on the worker.
#[derive(Debug, Clone)]
pub struct PfsMounts {
    pub input_name: String,
    pub input: PathBuf,
    pub out: PathBuf,
}

/// Why job code could not be run at all (its own failures are exit codes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    #[error("could not start {command:?}: {why}")]
    Start { command: String, why: String },
    #[error("the command line {command:?} is not valid: {why}")]
    BadCommand { command: String, why: String },
}

/// How the code ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Killed by the executor because it ran past its time limit.
    TimedOut,
    /// Killed because the task was cancelled.
    Cancelled,
    /// Killed by the kernel at its memory limit (in bytes).
    OutOfMemory(u64),
}

impl Exit {
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }

    pub fn describe(&self) -> String {
        match self {
            Exit::Code(c) => format!("exited with status {c}"),
            Exit::Signal(s) => format!("was killed by signal {s}"),
            Exit::TimedOut => "ran past its time limit and was killed".into(),
            Exit::Cancelled => "was cancelled".into(),
            Exit::OutOfMemory(limit) => {
                format!("was killed at its memory limit of {} MiB", limit >> 20)
            }
        }
    }
}

/// A started command: its three streams and a handle to wait for or kill it.
pub struct Started {
    pub stdin: Box<dyn AsyncWrite + Send + Unpin>,
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    pub stderr: Box<dyn AsyncRead + Send + Unpin>,
    pub handle: Box<dyn RunHandle>,
}

#[async_trait]
pub trait RunHandle: Send {
    /// Waits for the end (does not enforce any limit).
    async fn wait(&mut self) -> Exit;
    /// Kills the code and everything it started.
    async fn kill(&mut self);
    /// Frees what the run held once it has ended (a container is removed).
    async fn cleanup(&mut self) {}
}

#[async_trait]
pub trait Executor: Send + Sync + 'static {
    fn kind(&self) -> ExecutorKind;
    async fn start(&self, spec: &ExecSpec) -> Result<Started, ExecError>;
    /// Frees what the executor keeps between runs (the job is over).
    async fn finish(&self) {}
}

/// Whether a command line needs a shell (pipes, redirections, variables…).
pub fn needs_shell(command: &str) -> bool {
    let first_word_assigns = command
        .split_whitespace()
        .next()
        .is_some_and(|w| w.contains('='));
    first_word_assigns
        || command
            .chars()
            .any(|c| "|&;<>()$`\\\"'*?[]#~{}\n".contains(c))
}

/// The argv for a command line: split into words when it is plain, given to
/// `sh -c` otherwise.
pub fn argv(command: &str) -> Result<Vec<String>, ExecError> {
    if needs_shell(command) {
        return Ok(vec!["/bin/sh".into(), "-c".into(), command.to_owned()]);
    }
    let words = shell_words::split(command).map_err(|e| ExecError::BadCommand {
        command: command.to_owned(),
        why: e.to_string(),
    })?;
    if words.is_empty() {
        return Err(ExecError::BadCommand {
            command: command.to_owned(),
            why: "it is empty".into(),
        });
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_are_split_and_shell_ones_wrapped() {
        assert_eq!(
            argv("python3 mapper.py --step-num=0").unwrap(),
            ["python3", "mapper.py", "--step-num=0"]
        );
        assert_eq!(argv("cut -f1 | sort").unwrap()[..2], ["/bin/sh", "-c"]);
        assert!(argv("   ").is_err());
    }
}
