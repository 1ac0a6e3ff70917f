//! Job code in a fresh Docker container per run, through the engine's API
//! (bollard). This is the sandbox that lets a volunteer run a stranger's code:
//! no network, a read-only root with only a size-capped tmpfs `/tmp` to write
//! to, memory (without swap), CPU and process limits, every capability
//! dropped, no privilege gain, a non-root numeric user, and the job's files
//! mounted read-only as the working directory. stdin and stdout are streamed
//! through the attach connection, so a bucket never sits in memory whole.
//!
//! Every container carries the label `tormr.worker=<id>`, and is removed when
//! its run ends or is dropped; [`DockerExecutor::sweep`] removes whatever an
//! interrupted worker left behind.

use super::kept::{self, IDLE_TARGET, Kept};
use super::{ExecError, ExecSpec, Executor, Exit, RunHandle, Started, argv};
use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tormr_core::wire::bulletin::ExecutorKind;

/// Where the job's files appear inside the container (and its working folder).
pub const JOB_DIR: &str = "/job";
/// The numeric user job code runs as (`nobody` on Debian).
pub const JOB_USER: &str = "65534:65534";
/// The label every container of a worker carries, with the worker's name.
const WORKER_LABEL: &str = "tormr.worker";
/// How much output may wait between the container and the task before the
/// container is paused by back-pressure.
pub(super) const PIPE_BYTES: usize = 256 * 1024;

/// What a container may use: the volunteer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// CPUs, in billionths (Docker's `NanoCpus`).
    pub nano_cpus: u64,
    pub pids: u64,
    /// Size of the writable `/tmp`.
    pub tmp_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 1 << 30,
            nano_cpus: 1_000_000_000,
            pids: 256,
            tmp_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    #[error(
        "no Docker engine answers at {socket} ({why}); start it (systemctl start docker), \
         or give the worker access to its socket"
    )]
    NoEngine { socket: String, why: String },
    #[error(
        "the Docker engine has no image {image:?} ({why}); build or load it first \
         (`docker images` lists what it has)"
    )]
    NoImage { image: String, why: String },
    #[error("the Docker engine refused {what}: {why}")]
    Refused { what: String, why: String },
}

/// Runs each task in a fresh container of `image`.
#[derive(Clone)]
pub struct DockerExecutor {
    docker: Docker,
    image: String,
    limits: Limits,
    worker_label: String,
    /// Containers kept between runs, when enabled.
    kept: Option<Arc<Kept>>,
}

impl std::fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerExecutor")
            .field("image", &self.image)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Connects to the local engine (`DOCKER_HOST` if it names a unix socket,
/// else `/var/run/docker.sock`) and checks that it answers.
pub async fn connect() -> Result<Docker, DockerError> {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    connect_at(&socket).await
}

/// Connects to the engine at a unix socket and checks that it answers.
pub async fn connect_at(socket: &str) -> Result<Docker, DockerError> {
    let no_engine = |why: String| DockerError::NoEngine {
        socket: socket.to_owned(),
        why,
    };
    let docker = Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)
        .map_err(|e| no_engine(e.to_string()))?;
    // Debian's engine speaks an older API than bollard's default.
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| no_engine(e.to_string()))?;
    docker.ping().await.map_err(|e| no_engine(e.to_string()))?;
    warn_on_soft_memory_limit(&docker).await;
    Ok(docker)
}

/// An engine that cannot limit swap lets a memory hog page out instead of
/// being killed at its limit; swappiness 0 covers cgroup v1, but the operator
/// should know.
async fn warn_on_soft_memory_limit(docker: &Docker) {
    if let Ok(info) = docker.info().await
        && info.swap_limit == Some(false)
    {
        tracing::warn!(
            "the Docker engine cannot limit swap: a task over its memory limit may swap \
                 before it is killed; enable swap accounting (kernel option \
                 swapaccount=1 or cgroup v2) for a hard limit"
        );
    }
}

/// Checks that the engine has `image` (a name or an id).
pub async fn check_image(docker: &Docker, image: &str) -> Result<(), DockerError> {
    docker
        .inspect_image(image)
        .await
        .map(|_| ())
        .map_err(|e| DockerError::NoImage {
            image: image.to_owned(),
            why: e.to_string(),
        })
}

impl DockerExecutor {
    /// An executor for `image` (a name or id the local engine knows) whose
    /// containers are labelled with `worker_label`, a name for this worker
    /// that is stable across its restarts.
    pub fn new(docker: Docker, image: &str, limits: Limits, worker_label: &str) -> Self {
        DockerExecutor {
            docker,
            image: image.to_owned(),
            limits,
            worker_label: worker_label.to_owned(),
            kept: None,
        }
    }

    /// Serves runs from kept containers (one `docker exec` each) instead of
    /// a fresh container per run; the idle program is written into `dir`.
    /// Without an idle program for this architecture, nothing changes.
    pub fn keeping_containers(mut self, dir: &std::path::Path) -> Self {
        self.kept = Kept::new(self.docker.clone(), dir);
        self
    }

    /// Whether runs are served from kept containers.
    pub fn keeps_containers(&self) -> bool {
        self.kept.is_some()
    }

    /// Removes the kept containers that are free (call when the job is over).
    pub async fn retire(&self) {
        if let Some(kept) = &self.kept {
            kept.retire().await;
        }
    }

    pub(super) fn memory_bytes(&self) -> u64 {
        self.limits.memory_bytes
    }

    /// The environment job code sees in a container.
    pub(super) fn run_env(&self, spec: &ExecSpec) -> Vec<String> {
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.push("TMPDIR=/tmp".into());
        env.push("HOME=/tmp".into());
        env.push(format!("PATH={JOB_DIR}:/usr/local/bin:/usr/bin:/bin"));
        env
    }

    /// Creates and starts a container whose only process idles, for runs
    /// to be exec'd in; its id.
    pub(super) async fn create_idle(
        &self,
        spec: &ExecSpec,
        idle_program: &std::path::Path,
    ) -> Result<(String, Option<kept::Probe>), bollard::errors::Error> {
        let mut body = self.container_body(spec, vec![IDLE_TARGET.into()]);
        body.env = Some(Vec::new());
        body.attach_stdin = Some(false);
        body.attach_stdout = Some(false);
        body.attach_stderr = Some(false);
        body.open_stdin = Some(false);
        body.stdin_once = Some(false);
        if let Some(mounts) = body.host_config.as_mut().and_then(|h| h.mounts.as_mut()) {
            mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some(idle_program.display().to_string()),
                target: Some(IDLE_TARGET.into()),
                read_only: Some(true),
                ..Default::default()
            });
        }
        let options = CreateContainerOptionsBuilder::default().build();
        let id = self.docker.create_container(Some(options), body).await?.id;
        if let Err(e) = self.docker.start_container(&id, None).await {
            remove(&self.docker, &id).await;
            return Err(e);
        }
        let probe = match self.docker.inspect_container(&id, None).await {
            Ok(i) => i.state.and_then(|s| s.pid).and_then(kept::Probe::of_pid),
            Err(_) => None,
        };
        if probe.is_none() {
            tracing::debug!("cannot read a kept container's cgroup: it serves one run");
        }
        Ok((id, probe))
    }

    /// Removes every container this worker left behind (after a crash or a
    /// kill -9); returns how many.
    pub async fn sweep(&self) -> Result<usize, DockerError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{WORKER_LABEL}={}", self.worker_label)],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::Refused {
                what: "listing containers".into(),
                why: e.to_string(),
            })?;
        let mut removed = 0;
        for c in found {
            if let Some(id) = c.id
                && remove(&self.docker, &id).await
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn container_body(&self, spec: &ExecSpec, argv: Vec<String>) -> ContainerCreateBody {
        let env = self.run_env(spec);
        let memory = i64::try_from(self.limits.memory_bytes).unwrap_or(i64::MAX);
        let host = HostConfig {
            network_mode: Some("none".into()),
            // A private IPC namespace without /dev/shm: /tmp is the only
            // place job code can write.
            ipc_mode: Some("none".into()),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                // Owned by the job's user: an image's own /tmp mode would
                // otherwise carry over and may forbid writing.
                format!(
                    "rw,nosuid,nodev,size={},mode=1777,uid=65534,gid=65534",
                    self.limits.tmp_bytes
                ),
            )])),
            memory: Some(memory),
            // Swap equal to memory: no swap at all. Where the engine cannot
            // limit swap (cgroup v1 without swap accounting), a swappiness
            // of 0 still keeps the kernel from swapping the job's memory out
            // when it reaches its limit: it is killed instead of crawling.
            memory_swap: Some(memory),
            memory_swappiness: Some(0),
            nano_cpus: Some(i64::try_from(self.limits.nano_cpus).unwrap_or(i64::MAX)),
            pids_limit: Some(i64::try_from(self.limits.pids).unwrap_or(i64::MAX)),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            mounts: Some(mounts(spec)),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(argv),
            entrypoint: Some(vec![]),
            env: Some(env),
            working_dir: Some(JOB_DIR.into()),
            user: Some(JOB_USER.into()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            // The container's stdin closes when ours does: the code sees EOF.
            stdin_once: Some(true),
            tty: Some(false),
            network_disabled: Some(true),
            labels: Some(HashMap::from([(
                WORKER_LABEL.to_owned(),
                self.worker_label.clone(),
            )])),
            host_config: Some(host),
            ..Default::default()
        }
    }
}

fn bind(source: &std::path::Path, target: &str, read_only: bool) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(source.display().to_string()),
        target: Some(target.into()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The job's files at `/job`, and a datum's folders under `/pfs`.
fn mounts(spec: &ExecSpec) -> Vec<Mount> {
    let mut mounts = vec![bind(&spec.files, JOB_DIR, true)];
    if let Some(pfs) = &spec.pfs {
        mounts.push(bind(&pfs.input, &format!("/pfs/{}", pfs.input_name), true));
        mounts.push(bind(&pfs.out, "/pfs/out", false));
    }
    mounts
}

/// Force-removes a container; true if it was there.
pub(super) async fn remove(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    docker.remove_container(id, Some(options)).await.is_ok()
}

struct ContainerRun {
    docker: Docker,
    id: String,
    memory_bytes: u64,
    removed: bool,
    phases: Arc<Mutex<Phases>>,
}

/// Where a container run's time went, for the per-run overhead at debug
/// level (`bench/executor.sh` sums these lines). For a run in a kept
/// container, "create" is taking or making the container, "start" is starting
/// the exec, and "remove" is checking it fresh and giving it back.
#[derive(Debug, Default)]
pub(super) struct Phases {
    pub(super) began: Option<Instant>,
    pub(super) create: Duration,
    pub(super) attach: Duration,
    pub(super) start: Duration,
    /// From start to the first output byte.
    pub(super) first_byte: Option<Duration>,
    /// From start to the code's exit.
    pub(super) ran: Duration,
}

impl Phases {
    pub(super) fn log(&self, remove: Duration) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            "container run phases: create {:.1} ms, attach {:.1} ms, start {:.1} ms, first byte {:.1} ms, ran {:.1} ms, remove {:.1} ms",
            ms(self.create),
            ms(self.attach),
            ms(self.start),
            self.first_byte.map(ms).unwrap_or(-1.0),
            ms(self.ran),
            ms(remove)
        );
    }
}

#[async_trait]
impl RunHandle for ContainerRun {
    async fn wait(&mut self) -> Exit {
        let mut waits = self.docker.wait_container(&self.id, None);
        let ended = waits.next().await;
        {
            let mut p = self.phases.lock().unwrap_or_else(|p| p.into_inner());
            p.ran = p.began.map(|b| b.elapsed()).unwrap_or_default();
        }
        let code = match ended {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => {
                tracing::warn!("waiting for a container: {e}");
                -1
            }
            None => -1,
        };
        oom_or_exit(&self.docker, &self.id, code, self.memory_bytes).await
    }

    async fn kill(&mut self) {
        let options = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        // 409 (no longer running) is fine: it is dead either way.
        let _ = self.docker.kill_container(&self.id, Some(options)).await;
    }

    async fn cleanup(&mut self) {
        if !self.removed {
            let removing = Instant::now();
            remove(&self.docker, &self.id).await;
            self.removed = true;
            self.phases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .log(removing.elapsed());
        }
    }
}

impl Drop for ContainerRun {
    fn drop(&mut self) {
        // A run abandoned without cleanup (a panic, a cancelled task): remove
        // the container in the background; `sweep` catches what this misses.
        if !self.removed
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (docker, id) = (self.docker.clone(), self.id.clone());
            rt.spawn(async move {
                remove(&docker, &id).await;
            });
        }
    }
}

/// What an exit code means. Only a SIGKILL (137) can be the kernel's OOM
/// killer: the engine is asked then, and every other run spared the call.
pub(super) async fn oom_or_exit(docker: &Docker, container: &str, code: i64, memory: u64) -> Exit {
    let oom = code == 137
        && docker
            .inspect_container(container, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
    if oom {
        Exit::OutOfMemory(memory)
    } else if code > 128 && code < 160 {
        // Docker reports a signal death as 128 + the signal's number.
        Exit::Signal((code - 128) as i32)
    } else {
        Exit::Code(i32::try_from(code).unwrap_or(-1))
    }
}

/// Copies the multiplexed attach output into two pipes, one per stream.
pub(super) async fn demux(
    mut output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    mut stdout: tokio::io::DuplexStream,
    mut stderr: tokio::io::DuplexStream,
    phases: Arc<Mutex<Phases>>,
) {
    let mut stdout_open = true;
    let mut first = true;
    while let Some(item) = output.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                if first {
                    first = false;
                    let mut p = phases.lock().unwrap_or_else(|p| p.into_inner());
                    p.first_byte = p.began.map(|b| b.elapsed());
                }
                // A reader that went away (it had all it wanted) must not
                // stop stderr from being collected.
                if stdout_open && stdout.write_all(&message).await.is_err() {
                    stdout_open = false;
                }
            }
            Ok(LogOutput::StdErr { message }) => {
                let _ = stderr.write_all(&message).await;
            }
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => {
                tracing::debug!("container output ended: {e}");
                break;
            }
        }
    }
    let _ = stdout.shutdown().await;
    let _ = stderr.shutdown().await;
}

#[async_trait]
impl Executor for DockerExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Docker
    }

    async fn finish(&self) {
        self.retire().await;
    }

    async fn start(&self, spec: &ExecSpec) -> Result<Started, ExecError> {
        // A datum's folders differ per run: those runs get fresh containers.
        if let Some(kept) = &self.kept
            && spec.pfs.is_none()
        {
            return kept::start(self, kept, spec).await;
        }
        let words = match &spec.argv {
            Some(words) if !words.is_empty() => words.clone(),
            _ => argv(&spec.command)?,
        };
        let refused = |what: &str, e: bollard::errors::Error| ExecError::Start {
            command: spec.command.clone(),
            why: format!("the Docker engine refused to {what} a container: {e}"),
        };
        let options = CreateContainerOptionsBuilder::default().build();
        let mut phases = Phases::default();
        let mut clock = Instant::now();
        let lap = |clock: &mut Instant| {
            let d = clock.elapsed();
            *clock = Instant::now();
            d
        };
        let created = self
            .docker
            .create_container(Some(options), self.container_body(spec, words))
            .await
            .map_err(|e| refused("create", e))?;
        phases.create = lap(&mut clock);
        let mut run = ContainerRun {
            docker: self.docker.clone(),
            id: created.id,
            memory_bytes: self.limits.memory_bytes,
            removed: false,
            phases: Arc::new(Mutex::new(Phases::default())),
        };
        // Attach before start, so no output is lost.
        let attach = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .logs(false)
            .build();
        let attached = match self.docker.attach_container(&run.id, Some(attach)).await {
            Ok(a) => a,
            Err(e) => {
                run.cleanup().await;
                return Err(refused("attach to", e));
            }
        };
        phases.attach = lap(&mut clock);
        if let Err(e) = self.docker.start_container(&run.id, None).await {
            run.cleanup().await;
            return Err(refused("start", e));
        }
        phases.start = lap(&mut clock);
        phases.began = Some(clock);
        *run.phases.lock().unwrap_or_else(|p| p.into_inner()) = phases;
        let (out_writer, out_reader) = tokio::io::duplex(PIPE_BYTES);
        let (err_writer, err_reader) = tokio::io::duplex(PIPE_BYTES);
        // The pump ends when the container's output does (it exits or is killed).
        tokio::spawn(demux(
            attached.output,
            out_writer,
            err_writer,
            run.phases.clone(),
        ));
        Ok(Started {
            stdin: Box::new(attached.input),
            stdout: Box::new(out_reader),
            stderr: Box::new(err_reader),
            handle: Box::new(run),
        })
    }
}
