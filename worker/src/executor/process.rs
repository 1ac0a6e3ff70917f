//! Job code as a child process of the worker, in its own process group so a
//! kill reaches everything it started. No sandbox: only for the volunteer's
//! own jobs (local mode, an owner's trusted workers).

use super::{ExecError, ExecSpec, Executor, Exit, RunHandle, Started, argv};
use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::process::Stdio;
use tormr_core::wire::bulletin::ExecutorKind;

#[derive(Debug, Default, Clone)]
pub struct ProcessExecutor;

struct ProcessHandle {
    child: tokio::process::Child,
    pgid: Option<i32>,
}

#[async_trait]
impl RunHandle for ProcessHandle {
    async fn wait(&mut self) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match self.child.wait().await {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(s)) => Exit::Signal(s),
                (None, None) => Exit::Code(-1),
            },
            Err(_) => Exit::Code(-1),
        }
    }

    async fn kill(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        // Never leave job code running behind a finished or abandoned task.
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

#[async_trait]
impl Executor for ProcessExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Process
    }

    async fn start(&self, spec: &ExecSpec) -> Result<Started, ExecError> {
        if spec.pfs.is_some() {
            return Err(ExecError::Start {
                command: spec.command.clone(),
                why: "a Pachyderm pipeline runs in its image: it needs the Docker executor".into(),
            });
        }
        let words = match &spec.argv {
            Some(words) if !words.is_empty() => words.clone(),
            _ => argv(&spec.command)?,
        };
        let mut cmd = tokio::process::Command::new(&words[0]);
        cmd.args(&words[1..])
            .current_dir(&spec.workdir)
            .envs(&spec.env)
            .env("TMPDIR", &spec.tmpdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // Let `./mapper.py` style commands find shipped files without a path.
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", format!("{}:{path}", spec.workdir.display()));
        }
        let mut child = cmd.spawn().map_err(|e| ExecError::Start {
            command: spec.command.clone(),
            why: match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("{} was not found on this worker", words[0])
                }
                _ => e.to_string(),
            },
        })?;
        let start_err = |what: &str| ExecError::Start {
            command: spec.command.clone(),
            why: format!("no {what} pipe"),
        };
        let stdin = child.stdin.take().ok_or_else(|| start_err("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| start_err("stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| start_err("stderr"))?;
        let pgid = child.id().map(|p| p as i32);
        Ok(Started {
            stdin: Box::new(stdin),
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
            handle: Box::new(ProcessHandle { child, pgid }),
        })
    }
}
