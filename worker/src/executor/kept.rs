//! Kept containers: one container serves many runs of the same job, each run
//! a `docker exec` in it, because creating and starting a container costs
//! far more than a small task's own work (see `bench/executor.sh`).
//!
//! A kept container's first process is a tiny idle program of ours (an image
//! made from scratch has nothing that could idle), mounted read-only; it has
//! the same limits, mounts and user as a fresh one. A container goes back to
//! the pool only if its run left it as fresh as it was made: no process but
//! the idle one, and an empty `/tmp` (the engine's one-shot stats tell both).
//! Anything else — a timeout, a kill, an OOM, a file left in `/tmp`, a
//! process left behind — and the container is removed, so no run ever sees
//! what an earlier one left.

use super::docker::{DockerExecutor, JOB_DIR, JOB_USER, Phases, demux, oom_or_exit, remove};
use super::{ExecError, ExecSpec, Exit, RunHandle, Started, argv};
use async_trait::async_trait;
use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::{EventsOptionsBuilder, KillContainerOptionsBuilder};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the idle program appears inside a kept container.
pub(super) const IDLE_TARGET: &str = "/.tormr-idle";

/// A static x86-64 Linux program that waits in pause(2) forever: an ELF
/// header, one loadable segment, and `mov eax, 34; syscall; jmp back`. It
/// opens nothing, maps nothing else, and dies with the container.
#[cfg(target_arch = "x86_64")]
const IDLE_PROGRAM: Option<&[u8]> = Some(&[
    // ELF header: 64-bit, little-endian, executable, x86-64, entry 0x400078.
    0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x3e, 0x00, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x38, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    // Program header: PT_LOAD, read+execute, the whole 129-byte file at 0x400000.
    0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x81, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x81, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    // Code: mov eax, 34 (pause); syscall; jmp to the mov.
    0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7,
]);
#[cfg(not(target_arch = "x86_64"))]
const IDLE_PROGRAM: Option<&[u8]> = None;

/// A job's kept containers that are free for a run.
pub(super) struct Kept {
    docker: Docker,
    /// The idle program on the worker's disk.
    pub(super) idle_program: PathBuf,
    free: Mutex<Vec<Free>>,
}

struct Free {
    id: String,
    /// The job files folder it mounts: only runs with the same one reuse it.
    files: PathBuf,
    probe: Option<Probe>,
}

/// Where the kernel tells what a container holds: its memory cgroup's
/// `memory.stat` (tmpfs pages are `shmem`) and its pids cgroup's count.
/// Read from the host's cgroup files: the engine's own stats take up to a
/// second to answer, longer than a small task.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    memory_stat: PathBuf,
    pids_current: PathBuf,
}

impl Probe {
    /// The cgroup files of the process `pid` (cgroup v1 or v2).
    pub(super) fn of_pid(pid: i64) -> Option<Probe> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let root = Path::new("/sys/fs/cgroup");
        let path_of = |controller: &str| {
            text.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
                names
                    .split(',')
                    .any(|n| n == controller)
                    .then(|| path.trim_start_matches('/').to_owned())
            })
        };
        let probe = match (path_of("memory"), path_of("pids")) {
            (Some(memory), Some(pids)) => Probe {
                memory_stat: root.join("memory").join(memory).join("memory.stat"),
                pids_current: root.join("pids").join(pids).join("pids.current"),
            },
            // cgroup v2: one hierarchy, the line `0::/path`.
            _ => {
                let path = path_of("")?;
                Probe {
                    memory_stat: root.join(&path).join("memory.stat"),
                    pids_current: root.join(&path).join("pids.current"),
                }
            }
        };
        probe.read().map(|_| probe)
    }

    /// (processes, tmpfs bytes) now.
    fn read(&self) -> Option<(u64, u64)> {
        let pids = std::fs::read_to_string(&self.pids_current).ok()?;
        let stat = std::fs::read_to_string(&self.memory_stat).ok()?;
        let shmem = stat
            .lines()
            .find_map(|l| l.strip_prefix("shmem "))?
            .trim()
            .parse()
            .ok()?;
        Some((pids.trim().parse().ok()?, shmem))
    }

    /// Only the idle process runs, and nothing is stored in `/tmp`.
    fn is_fresh(&self) -> bool {
        self.read() == Some((1, 0))
    }
}

impl Kept {
    /// Writes the idle program into `dir`; `None` where there is none for
    /// this machine's architecture (every run then gets a fresh container).
    pub(super) fn new(docker: Docker, dir: &Path) -> Option<Arc<Kept>> {
        let program = IDLE_PROGRAM?;
        let path = dir.join("idle-x86_64");
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            let tmp = dir.join(format!("idle.{}.tmp", std::process::id()));
            std::fs::write(&tmp, program)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
            std::fs::rename(&tmp, &path)
        });
        match written {
            Ok(()) => Some(Arc::new(Kept {
                docker,
                idle_program: path,
                free: Mutex::new(Vec::new()),
            })),
            Err(e) => {
                tracing::warn!(
                    "cannot keep containers between runs ({}: {e}); every run gets a fresh one",
                    path.display()
                );
                None
            }
        }
    }

    fn take(&self, files: &Path) -> Option<(String, Option<Probe>)> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let i = free.iter().position(|f| f.files == files)?;
        let f = free.swap_remove(i);
        Some((f.id, f.probe))
    }

    fn give_back(&self, id: String, files: PathBuf, probe: Option<Probe>) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Free { id, files, probe });
    }

    /// Whether the engine saw the kernel's OOM killer in the container since
    /// `since` (unix seconds): its `oom` events.
    async fn oom_since(&self, id: &str, since: u64) -> bool {
        let filters = std::collections::HashMap::from([
            ("container", vec![id.to_owned()]),
            ("event", vec!["oom".to_owned()]),
        ]);
        let options = EventsOptionsBuilder::new()
            .since(&since.to_string())
            .until(&(tormr_core::unix_now() + 1).to_string())
            .filters(&filters)
            .build();
        let mut events = self.docker.events(Some(options));
        matches!(
            tokio::time::timeout(Duration::from_secs(5), events.next()).await,
            Ok(Some(Ok(_)))
        )
    }

    /// Removes every free container (the job is over).
    pub(super) async fn retire(&self) {
        let ids: Vec<String> =
            std::mem::take(&mut *self.free.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .map(|f| f.id)
                .collect();
        for id in ids {
            remove(&self.docker, &id).await;
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let ids: Vec<String> =
            std::mem::take(self.free.get_mut().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .map(|f| f.id)
                .collect();
        if ids.is_empty() {
            return;
        }
        // The job's executor went away: remove its containers in the
        // background; `sweep` at the next start catches what this misses.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            rt.spawn(async move {
                for id in ids {
                    remove(&docker, &id).await;
                }
            });
        }
    }
}

/// Starts a run as an exec in a kept container (made if none is free).
pub(super) async fn start(
    executor: &DockerExecutor,
    kept: &Arc<Kept>,
    spec: &ExecSpec,
) -> Result<Started, ExecError> {
    let words = argv(&spec.command)?;
    let refused = |what: &str, e: bollard::errors::Error| ExecError::Start {
        command: spec.command.clone(),
        why: format!("the Docker engine refused to {what}: {e}"),
    };
    let mut phases = Phases::default();
    let began = Instant::now();
    let (container, probe) = match kept.take(&spec.files) {
        Some(found) => found,
        None => executor
            .create_idle(spec, &kept.idle_program)
            .await
            .map_err(|e| refused("make a container", e))?,
    };
    phases.create = began.elapsed();
    let mut run = ExecRun {
        docker: kept.docker.clone(),
        kept: kept.clone(),
        container,
        probe,
        files: spec.files.clone(),
        exec: String::new(),
        spoiled: false,
        done: false,
        memory_bytes: executor.memory_bytes(),
        started_at: tormr_core::unix_now().saturating_sub(1),
        phases: Arc::new(Mutex::new(Phases::default())),
        output_ended: None,
    };
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: Some(executor.run_env(spec)),
        cmd: Some(words),
        user: Some(JOB_USER.into()),
        working_dir: Some(JOB_DIR.into()),
        ..Default::default()
    };
    let created = match run.docker.create_exec(&run.container, config).await {
        Ok(c) => c,
        Err(e) => {
            run.spoiled = true;
            run.cleanup().await;
            return Err(refused("create an exec", e));
        }
    };
    run.exec = created.id;
    let clock = Instant::now();
    let options = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: None,
    };
    let (output, input) = match run.docker.start_exec(&run.exec, Some(options)).await {
        Ok(StartExecResults::Attached { output, input }) => (output, input),
        Ok(StartExecResults::Detached) | Err(_) => {
            run.spoiled = true;
            run.cleanup().await;
            return Err(ExecError::Start {
                command: spec.command.clone(),
                why: "the Docker engine would not attach to the exec".into(),
            });
        }
    };
    phases.start = clock.elapsed();
    phases.began = Some(Instant::now());
    *run.phases.lock().unwrap_or_else(|p| p.into_inner()) = phases;
    let (out_writer, out_reader) = tokio::io::duplex(super::docker::PIPE_BYTES);
    let (err_writer, err_reader) = tokio::io::duplex(super::docker::PIPE_BYTES);
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    run.output_ended = Some(ended_rx);
    let pump_phases = run.phases.clone();
    // The pump ends when the exec's output does (it exits or is killed).
    tokio::spawn(async move {
        demux(output, out_writer, err_writer, pump_phases).await;
        let _ = ended_tx.send(());
    });
    Ok(Started {
        stdin: Box::new(input),
        stdout: Box::new(out_reader),
        stderr: Box::new(err_reader),
        handle: Box::new(run),
    })
}

struct ExecRun {
    docker: Docker,
    kept: Arc<Kept>,
    container: String,
    /// Without one the container cannot be checked, so it serves one run.
    probe: Option<Probe>,
    files: PathBuf,
    exec: String,
    /// The container must not serve another run.
    spoiled: bool,
    /// Cleaned up (given back or removed).
    done: bool,
    memory_bytes: u64,
    /// Unix seconds when the run started (for the engine's events).
    started_at: u64,
    phases: Arc<Mutex<Phases>>,
    output_ended: Option<tokio::sync::oneshot::Receiver<()>>,
}

#[async_trait]
impl RunHandle for ExecRun {
    async fn wait(&mut self) -> Exit {
        if let Some(ended) = self.output_ended.take() {
            let _ = ended.await;
        }
        // The code may close its output before it exits.
        let mut pause = Duration::from_millis(2);
        let code = loop {
            match self.docker.inspect_exec(&self.exec).await {
                Ok(i) if i.running == Some(false) => break i.exit_code.unwrap_or(-1),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("asking about an exec: {e}");
                    break -1;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        };
        {
            let mut p = self.phases.lock().unwrap_or_else(|p| p.into_inner());
            p.ran = p.began.map(|b| b.elapsed()).unwrap_or_default();
        }
        let mut exit = oom_or_exit(&self.docker, &self.container, code, self.memory_bytes).await;
        if exit == Exit::Signal(9) && self.kept.oom_since(&self.container, self.started_at).await {
            // The engine flags OOM only for a container's first process; in
            // a kept one its `oom` event tells.
            exit = Exit::OutOfMemory(self.memory_bytes);
        }
        if matches!(exit, Exit::OutOfMemory(_) | Exit::Signal(_)) || code < 0 {
            self.spoiled = true;
        }
        exit
    }

    async fn kill(&mut self) {
        // An exec cannot be killed alone: the container goes with it.
        self.spoiled = true;
        let options = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        let _ = self
            .docker
            .kill_container(&self.container, Some(options))
            .await;
    }

    async fn cleanup(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let checking = Instant::now();
        let fresh = self.probe.as_ref().is_some_and(Probe::is_fresh);
        if !self.spoiled && fresh {
            self.kept.give_back(
                self.container.clone(),
                self.files.clone(),
                self.probe.take(),
            );
        } else {
            remove(&self.docker, &self.container).await;
        }
        self.phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log(checking.elapsed());
    }
}

impl Drop for ExecRun {
    fn drop(&mut self) {
        // Abandoned mid-run: the container cannot be trusted to be fresh.
        if !self.done
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (docker, id) = (self.docker.clone(), self.container.clone());
            rt.spawn(async move {
                remove(&docker, &id).await;
            });
        }
    }
}
