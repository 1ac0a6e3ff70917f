//! One joined job on the worker's side: fetch the job's files, then lease,
//! download, run, upload and report until the job master says the job is done.
//!
//! A fetcher leases the next task and downloads its inputs while the runners
//! work on the current ones (one task of prefetch), and a heartbeat keeps the
//! leases alive and tells the worker which attempts to abandon. A runner
//! that finds no prefetched task waiting asks for its next one in the report
//! it sends, saving a round trip per task when tasks are short.

use crate::config::WorkerConfig;
use crate::executor::Executor;
use crate::files::{fetch_all, prepare_workdir};
use crate::standing::{JobStanding, StandingWatch};
use crate::task::{TaskEnv, TaskFailed, run_task};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tormr_core::counters::Counters;
use tormr_core::ids::AttemptId;
use tormr_core::wire::codes;
use tormr_core::wire::job::{
    Heartbeat, Joined, Lease, LeaseAnswer, Outcome, Report, TaskAssignment, WrittenBucket,
};
use tormr_datalayer::DataClient;
use tormr_datalayer::client::no_progress;
use tormr_net::client::with_retries;
use tormr_net::{ClientError, HttpClient};

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The job finished.
    JobDone,
    /// The job master dropped this worker or cannot be reached.
    Lost(String),
    /// The worker is shutting down.
    Stopped,
}

/// A task whose inputs are on disk, ready to run.
struct Ready {
    task: TaskAssignment,
    inputs: Vec<PathBuf>,
    cancel: CancellationToken,
    /// Held until the task is finished (or handed to the task leased in its
    /// report): bounds leases to slots + 1.
    slot: tokio::sync::OwnedSemaphorePermit,
}

type Queue = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Ready>>>;

type Running = Arc<Mutex<BTreeMap<AttemptId, CancellationToken>>>;

struct Shared {
    jm: HttpClient,
    data: DataClient,
    joined: Joined,
    dir: PathBuf,
    executor: Arc<dyn Executor>,
    config: WorkerConfig,
    running: Running,
    /// Fires when the session must stop (job done, lost, or worker stopping).
    end: CancellationToken,
    outcome: Mutex<Option<SessionEnd>>,
    /// Attempts this worker finished (for the traffic summary).
    tasks_done: std::sync::atomic::AtomicU32,
    /// Attempts begun, counted for fault injection.
    tasks_begun: std::sync::atomic::AtomicU64,
    /// Where to ask whether the job is over when its master stops answering.
    standing: Option<JobStanding>,
}

impl Shared {
    fn running_ids(&self) -> Vec<AttemptId> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn finish(&self, how: SessionEnd) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(how);
        self.end.cancel();
    }

    fn forget(&self, attempt: &AttemptId) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(attempt);
    }
}

/// Runs one joined job to its end.
pub async fn run_session(
    jm: HttpClient,
    data: DataClient,
    joined: Joined,
    executor: Arc<dyn Executor>,
    config: WorkerConfig,
    standing: Option<JobStanding>,
    stop: CancellationToken,
) -> SessionEnd {
    let dir = config.state_dir.join("jobs").join(joined.job.as_str());
    let shared = Arc::new(Shared {
        jm,
        data,
        dir: dir.clone(),
        executor,
        running: Arc::new(Mutex::new(BTreeMap::new())),
        end: stop.child_token(),
        outcome: Mutex::new(None),
        tasks_done: std::sync::atomic::AtomicU32::new(0),
        tasks_begun: std::sync::atomic::AtomicU64::new(0),
        standing,
        config,
        joined,
    });
    let files_dir = dir.join("files");
    let files = fetch_all(
        &shared.jm,
        &shared.joined.spec.files,
        &files_dir,
        shared.config.max_file_bytes,
    );
    let end = match keep_alive(&shared.jm, shared.joined.heartbeat_secs, files).await {
        Err(e) => SessionEnd::Lost(format!("could not fetch the job's files: {e}")),
        Ok(()) => drive(shared.clone()).await,
    };
    // Round trips are what cost over Tor: say what this job took.
    let jm = shared.jm.stats();
    let (data_requests, data_connections) = shared.data.traffic();
    tracing::info!(
        "traffic: {} task(s); job master: {} request(s) on {} connection(s); data layer: {} request(s) on {} connection(s)",
        shared.tasks_done.load(std::sync::atomic::Ordering::Relaxed),
        jm.requests(),
        jm.connections(),
        data_requests,
        data_connections
    );
    // Whatever happened, leave no job data behind (kept containers first:
    // they mount the job's files).
    shared.executor.finish().await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    if stop.is_cancelled() {
        SessionEnd::Stopped
    } else {
        end
    }
}

async fn drive(shared: Arc<Shared>) -> SessionEnd {
    let (tx, rx) = tokio::sync::mpsc::channel::<Ready>(1);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(heartbeat(shared.clone()));
    for _ in 0..shared.config.slots.max(1) {
        tasks.spawn(runner(shared.clone(), rx.clone()));
    }
    let fetched = fetcher(shared.clone(), tx).await;
    // The fetcher ended: let runners drain the queue, then stop the heartbeat.
    let heartbeat_stop = shared.end.clone();
    if let Some(end) = fetched {
        shared.finish(end);
    }
    while tasks.len() > 1 {
        if tasks.join_next().await.is_none() {
            break;
        }
        if tasks.len() == 1 {
            heartbeat_stop.cancel();
        }
    }
    heartbeat_stop.cancel();
    while tasks.join_next().await.is_some() {}
    let outcome = shared
        .outcome
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    outcome.unwrap_or(SessionEnd::JobDone)
}

/// Leases tasks and downloads their inputs; returns how the session ends.
async fn fetcher(shared: Arc<Shared>, tx: tokio::sync::mpsc::Sender<Ready>) -> Option<SessionEnd> {
    let mut failing_since: Option<Instant> = None;
    let mut standing = StandingWatch::new(shared.standing.clone());
    // One lease per slot plus one being prefetched, never more.
    let leases = Arc::new(tokio::sync::Semaphore::new(
        shared.config.slots.max(1) as usize + 1,
    ));
    loop {
        if shared.end.is_cancelled() {
            return None;
        }
        let slot = tokio::select! {
            _ = shared.end.cancelled() => return None,
            permit = leases.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return None,
            },
        };
        let lease = Lease {
            wait_secs: shared.config.poll_wait.as_secs(),
            running: shared.running_ids(),
        };
        let answer = tokio::select! {
            _ = shared.end.cancelled() => return None,
            a = shared.jm.call(&lease) => a,
        };
        match answer {
            Ok(LeaseAnswer::Task { task }) => {
                failing_since = None;
                standing.reset();
                if let Some(ready) = take_on(&shared, *task, slot).await
                    && tx.send(ready).await.is_err()
                {
                    return None;
                }
            }
            Ok(LeaseAnswer::Wait) => {
                failing_since = None;
                standing.reset();
            }
            Ok(LeaseAnswer::Done) => return Some(SessionEnd::JobDone),
            Err(e) if e.code() == Some(codes::BUCKET_CAP) => {
                // Only input is left and this worker holds its share: wait for other work.
                tracing::debug!("{e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) if e.code() == Some(codes::SESSION) => {
                return Some(SessionEnd::Lost(e.to_string()));
            }
            Err(e) if e.is_retryable() => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if standing.job_is_over(since).await {
                    tracing::info!(
                        "the job master went away and the owner withdrew the job from the bulletin: the job is over"
                    );
                    return Some(SessionEnd::JobDone);
                }
                if since.elapsed() > Duration::from_secs(300) {
                    return Some(SessionEnd::Lost(format!(
                        "the job master has been unreachable for 5 minutes: {e}"
                    )));
                }
                // Back off: over Tor every try at an unreachable service
                // builds circuits.
                let pause = since.elapsed().as_secs().clamp(1, 30);
                tokio::time::sleep(Duration::from_secs(pause)).await;
            }
            Err(e) => return Some(SessionEnd::Lost(e.to_string())),
        }
    }
}

/// Registers a leased task as running and downloads its inputs; a failed
/// download is reported and the task dropped.
async fn take_on(
    shared: &Shared,
    task: TaskAssignment,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Option<Ready> {
    let cancel = shared.end.child_token();
    shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(task.attempt, cancel.clone());
    match download_inputs(shared, &task).await {
        Ok(inputs) => Some(Ready {
            task,
            inputs,
            cancel,
            slot,
        }),
        Err(why) => {
            let failed = TaskFailed {
                reason: why,
                exit_code: None,
                stderr_tail: String::new(),
                counters: Counters::default(),
                cancelled: false,
            };
            send_report(shared, failure_report(&task, failed, 0), false).await;
            shared.forget(&task.attempt);
            None
        }
    }
}

async fn download_inputs(shared: &Shared, task: &TaskAssignment) -> Result<Vec<PathBuf>, String> {
    let dir = shared.dir.join("in").join(task.attempt.to_string());
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut paths = Vec::with_capacity(task.inputs.len());
    for (i, input) in task.inputs.iter().enumerate() {
        let path = dir.join(format!("{i:05}.sealed"));
        shared
            .data
            .get_to_file(&input.bucket, &input.token, &path, no_progress())
            .await
            .map_err(|e| format!("downloading input {}: {e}", input.bucket))?;
        paths.push(path);
    }
    Ok(paths)
}

async fn runner(shared: Arc<Shared>, queue: Queue) {
    loop {
        let next = {
            let mut rx = queue.lock().await;
            rx.recv().await
        };
        let Some(mut ready) = next else { return };
        // Tasks leased in this runner's reports run here, on the same slot.
        loop {
            let attempt = ready.task.attempt;
            let leased = match run_one(&shared, &ready).await {
                Some(report) => send_report(&shared, report, nothing_queued(&queue)).await,
                None => None,
            };
            shared.forget(&attempt);
            let Some(task) = leased else { break };
            match take_on(&shared, task, ready.slot).await {
                Some(next) => ready = next,
                None => break,
            }
        }
    }
}

/// True when no prefetched task waits for a runner: only then does a
/// report lease the next task (a waiting one would otherwise be passed over).
fn nothing_queued(queue: &Queue) -> bool {
    match queue.try_lock() {
        Ok(rx) => rx.is_empty(),
        // Another runner is waiting on the queue, so it is empty.
        Err(_) => true,
    }
}

/// Runs one task and uploads its outputs; returns its report (none when
/// the task was abandoned).
async fn run_one(shared: &Arc<Shared>, ready: &Ready) -> Option<Report> {
    let attempt = ready.task.attempt;
    let work = shared.dir.join("work").join(attempt.to_string());
    let scratch = work.join(".tormr-tmp");
    let staging = shared.dir.join("out").join(attempt.to_string());
    let started = Instant::now();
    let prepared = std::fs::create_dir_all(shared.dir.join("files"))
        .map_err(|e| e.to_string())
        .and_then(|_| prepare_workdir(&shared.dir.join("files"), &work).map_err(|e| e.to_string()))
        .and_then(|_| std::fs::create_dir_all(&scratch).map_err(|e| e.to_string()))
        .and_then(|_| std::fs::create_dir_all(&staging).map_err(|e| e.to_string()));
    let outcome = match prepared {
        Err(why) => Err(TaskFailed {
            reason: format!("preparing the task folder: {why}"),
            exit_code: None,
            stderr_tail: String::new(),
            counters: Counters::default(),
            cancelled: false,
        }),
        Ok(()) => {
            let env = TaskEnv {
                rt: tokio::runtime::Handle::current(),
                executor: shared.executor.clone(),
                job: shared.joined.job.clone(),
                workdir: work.clone(),
                files: shared.dir.join("files"),
                scratch: scratch.clone(),
                staging: staging.clone(),
                cancel: ready.cancel.clone(),
                sort_buffer_cap: shared.config.sort_buffer_cap,
                pachyderm: shared.joined.spec.pachyderm.clone(),
                misbehaviour: shared.config.misbehaviour.filter(|m| {
                    let nth = shared
                        .tasks_begun
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    m.lies_on(nth + 1)
                }),
            };
            let task = ready.task.clone();
            let inputs = ready.inputs.clone();
            tokio::task::spawn_blocking(move || run_task(&env, &task, &inputs))
                .await
                .unwrap_or_else(|e| {
                    Err(TaskFailed {
                        reason: format!("the task runner crashed: {e}"),
                        exit_code: None,
                        stderr_tail: String::new(),
                        counters: Counters::default(),
                        cancelled: false,
                    })
                })
        }
    };
    // Inputs are plaintext-capable material: drop them as soon as possible.
    let _ = tokio::fs::remove_dir_all(shared.dir.join("in").join(attempt.to_string())).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    let elapsed = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(done) => {
            if ready.cancel.is_cancelled() {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return None;
            }
            let mut outputs = Vec::with_capacity(done.written.len());
            let mut upload_error = None;
            for ((written, path), slot) in done.written.iter().zip(&ready.task.outputs) {
                match shared
                    .data
                    .put_file(&written.bucket, &slot.token, path, no_progress())
                    .await
                {
                    Ok(stored) => outputs.push(WrittenBucket {
                        receipt: stored.receipt,
                        ..written.clone()
                    }),
                    Err(e) => {
                        upload_error = Some(format!("uploading {}: {e}", written.bucket));
                        break;
                    }
                }
            }
            let _ = tokio::fs::remove_dir_all(&staging).await;
            match upload_error {
                None => {
                    tracing::info!("task {attempt} done in {:.1} s", elapsed as f64 / 1000.0);
                    shared
                        .tasks_done
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Some(Report {
                        attempt,
                        outcome: Outcome::Succeeded { outputs },
                        counters: done.counters,
                        elapsed_ms: elapsed,
                        next: None,
                    })
                }
                Some(why) => {
                    let failed = TaskFailed {
                        reason: why,
                        exit_code: None,
                        stderr_tail: String::new(),
                        counters: done.counters,
                        cancelled: false,
                    };
                    Some(failure_report(&ready.task, failed, elapsed))
                }
            }
        }
        Err(failed) => {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            if failed.cancelled || ready.cancel.is_cancelled() {
                tracing::debug!("task {attempt} abandoned");
                return None;
            }
            tracing::info!("task {attempt} failed: {}", failed.reason);
            Some(failure_report(&ready.task, failed, elapsed))
        }
    }
}

fn failure_report(task: &TaskAssignment, failed: TaskFailed, elapsed_ms: u64) -> Report {
    Report {
        attempt: task.attempt,
        outcome: Outcome::Failed {
            reason: failed.reason,
            exit_code: failed.exit_code,
            stderr_tail: failed.stderr_tail,
        },
        counters: failed.counters,
        elapsed_ms,
        next: None,
    }
}

/// Sends a report; with `ask_next`, leases the slot's next task in it and
/// returns that task when the job master had one ready.
async fn send_report(
    shared: &Shared,
    mut report: Report,
    ask_next: bool,
) -> Option<TaskAssignment> {
    let attempt = report.attempt;
    if ask_next && !shared.end.is_cancelled() {
        report.next = Some(Lease {
            wait_secs: 0,
            running: shared.running_ids(),
        });
    }
    match with_retries(6, || shared.jm.call(&report)).await {
        Ok(answer) => {
            if !answer.accepted {
                tracing::info!("report for {attempt} not taken: {}", answer.note)
            }
            match answer.next {
                Some(LeaseAnswer::Task { task }) => Some(*task),
                // Waiting and the job's end are the fetcher's to learn.
                _ => None,
            }
        }
        Err(e) => {
            tracing::warn!("could not report {attempt}: {e}");
            None
        }
    }
}

async fn heartbeat(shared: Arc<Shared>) {
    let every = Duration::from_secs(shared.joined.heartbeat_secs.clamp(1, 60));
    loop {
        tokio::select! {
            _ = shared.end.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let hb = Heartbeat {
            running: shared.running_ids(),
        };
        match shared.jm.call(&hb).await {
            Ok(answer) => {
                let running = shared.running.lock().unwrap_or_else(|p| p.into_inner());
                for id in &answer.cancel {
                    if let Some(token) = running.get(id) {
                        tracing::debug!(
                            "abandoning {id}: the job master says another copy won or the lease is gone"
                        );
                        token.cancel();
                    }
                }
            }
            Err(ClientError::Api { code, .. }) if code == codes::SESSION => {
                shared.finish(SessionEnd::Lost(
                    "the job master dropped this worker".into(),
                ));
                return;
            }
            Err(e) => tracing::debug!("heartbeat failed: {e}"),
        }
    }
}

/// Runs `work` (fetching the job's image or files, before any task) while
/// telling the job master this worker is alive: a fetch slower than the job
/// master's patience must not look like a silent worker and get it dropped.
pub async fn keep_alive<T>(
    jm: &HttpClient,
    heartbeat_secs: u64,
    work: impl std::future::Future<Output = T>,
) -> T {
    let every = Duration::from_secs(heartbeat_secs.clamp(1, 60));
    let jm = jm.clone();
    // Dropped with this function's future, which aborts the beat.
    let mut beat = tokio::task::JoinSet::new();
    beat.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let idle = Heartbeat {
                running: Vec::new(),
            };
            if let Err(e) = jm.call(&idle).await {
                tracing::debug!("heartbeat while preparing failed: {e}");
            }
        }
    });
    work.await
}

/// Where a job's working data lives on this worker.
pub fn job_dir(state: &Path, job: &str) -> PathBuf {
    state.join("jobs").join(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tormr_net::tcp::TcpTransport;
    use tormr_net::transport::ServiceSpec;
    use tormr_net::{ApiError, Body, Handler, Server, ServerConfig, Transport};

    /// Stands in for the job master: counts heartbeats.
    struct Beats(AtomicUsize);

    #[async_trait::async_trait]
    impl Handler for Beats {
        async fn handle(
            &self,
            request: http::Request<hyper::body::Incoming>,
        ) -> Result<http::Response<Body>, ApiError> {
            if request.uri().path() == "/v1/heartbeat" {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            Ok(tormr_net::body::json_body(
                &tormr_core::wire::job::HeartbeatAnswer::default(),
            ))
        }
    }

    #[tokio::test]
    async fn a_slow_preparation_keeps_the_worker_alive_and_the_beat_stops_with_it() {
        let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
        let beats = Arc::new(Beats(AtomicUsize::new(0)));
        let listener = transport.publish(&ServiceSpec::new("jm")).await.unwrap();
        let server = Server::spawn(listener, beats.clone(), ServerConfig::default());
        let jm = HttpClient::new(transport, server.address().clone());
        let slow_fetch = async {
            tokio::time::sleep(Duration::from_millis(3500)).await;
            "fetched"
        };
        assert_eq!(keep_alive(&jm, 1, slow_fetch).await, "fetched");
        let during = beats.0.load(Ordering::SeqCst);
        assert!(
            during >= 2,
            "{during} heartbeat(s) in 3.5 s at one a second"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            beats.0.load(Ordering::SeqCst),
            during,
            "no beat after the work"
        );
    }
}
