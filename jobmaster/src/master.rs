//! The job master: the scheduler, the key vault and the sessions of one job,
//! and what the worker-facing and owner-facing APIs call.

use crate::clock::Clock;
use crate::records::{BucketRef, ClusterRecord, JobRecord, Records, SessionRecord};
use crate::scheduler::{
    Assignment, Leased, Rejected, Scheduler, SchedulerConfig, Standing, TrustEvent, WorkerId,
};
use crate::trust::TrustBook;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tormr_core::encoding::{Digest, b64};
use tormr_core::identity::{Identity, PublicKey, Signed};
use tormr_core::ids::{JobId, TaskKind};
use tormr_core::image::ArchiveRef;
use tormr_core::spec::JobSpec;
use tormr_core::store::{Store, StoreError};
use tormr_core::token::{Capability, TokenSecret, Verb};
use tormr_core::wire::MAX_WAIT_SECS;
use tormr_core::wire::codes;
use tormr_core::wire::job::{
    Heartbeat, HeartbeatAnswer, InputBucket, JobState, JobStatus, Join, Joined, Lease, LeaseAnswer,
    Outcome, OutputBucket, OwnerEndorsement, Report, ReportAnswer, TaskAssignment, WorkerStatus,
};
use tormr_datalayer::DataClient;
use tormr_net::{Address, ApiError};

/// How a job master is set up.
pub struct JobMasterConfig {
    pub job: JobId,
    pub spec: JobSpec,
    /// The job's key: signs its cluster request; tickets must name it.
    pub identity: Arc<Identity>,
    /// The data layer's address as workers reach it.
    pub datalayer: Address,
    /// Shared with the data layer; mints capability tokens.
    pub secret: TokenSecret,
    pub store: Arc<dyn Store>,
    /// The job's files by digest, as the owner has them.
    pub files: BTreeMap<Digest, PathBuf>,
    /// The exported image archive workers fetch, when the job ships one.
    pub image: Option<ImageArchive>,
    /// The owner's endorsement, handed to workers on joining.
    pub endorsement: Option<Signed<OwnerEndorsement>>,
    pub scheduler: SchedulerConfig,
    pub heartbeat_secs: u64,
    /// The job master's own client of the data layer, to check reported outputs.
    pub data: DataClient,
    pub clock: Arc<dyn Clock>,
    /// The owner's trust book, shared by her jobs.
    pub trust: TrustBook,
    /// Pseudonyms of the owner's own workers: never second-guessed, and the
    /// arbiters of disputes.
    pub trusted_workers: std::collections::BTreeSet<PublicKey>,
    /// Where banned pseudonyms go, for the owner to report to the bulletin.
    pub bans: Option<tokio::sync::mpsc::Sender<PublicKey>>,
}

struct Session {
    pseudonym: PublicKey,
}

#[derive(Default)]
struct Sessions {
    by_token: HashMap<String, WorkerId>,
    workers: BTreeMap<WorkerId, Session>,
    /// Workers that have been answered "the job is done".
    told_done: std::collections::BTreeSet<WorkerId>,
    /// Sessions of a crashed run, with their standing: each worker rejoins
    /// the scheduler when it next calls (one that never does was never
    /// waited for).
    returning: HashMap<WorkerId, Standing>,
}

/// An image archive on the owner's disk and its chunk list (`spec.image`).
#[derive(Debug, Clone)]
pub struct ImageArchive {
    pub path: PathBuf,
    pub archive: ArchiveRef,
}

pub struct JobMaster {
    job: JobId,
    spec: JobSpec,
    identity: Arc<Identity>,
    datalayer: Address,
    secret: TokenSecret,
    files: BTreeMap<Digest, PathBuf>,
    image: Option<ImageArchive>,
    endorsement: Option<Signed<OwnerEndorsement>>,
    /// Chunk digest → chunk number in `image`.
    image_chunks: HashMap<Digest, usize>,
    heartbeat_secs: u64,
    data: DataClient,
    clock: Arc<dyn Clock>,
    records: Records,
    trust: TrustBook,
    trusted_workers: std::collections::BTreeSet<PublicKey>,
    bans: Option<tokio::sync::mpsc::Sender<PublicKey>>,
    scheduler: Mutex<Scheduler>,
    sessions: Mutex<Sessions>,
    cluster: Mutex<Option<ClusterRecord>>,
    /// How long after submission the cluster was matched.
    matched_after: Mutex<Option<Duration>>,
    /// Bumped whenever work may have become available or the job moved.
    version: watch::Sender<u64>,
}

fn banned() -> ApiError {
    ApiError::forbidden(
        "this worker was banned from the job: an answer of it disagreed with the verified one",
    )
}

/// Attempt numbers each run of a job master may use before the next run's
/// begin (a task's attempts are capped far below this).
const ATTEMPTS_PER_RUN: u32 = 1000;

/// What a resumed job master found in its store.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The board and request the crashed run was matched through.
    pub earlier_cluster: Option<ClusterRecord>,
    /// How many times the job has now been resumed.
    pub resumes: u32,
    pub inputs: u32,
    pub input_closed: bool,
    pub tasks_done: u32,
    pub sessions: u32,
}

/// Why a job cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error(
        "the job store holds no job {0}: check that --state names the folder the job was submitted with"
    )]
    NoJob(JobId),
    #[error(
        "the job definition changed since job {0} was submitted (a flag, a shipped file or the image differs): put it back as it was, or submit a new job"
    )]
    SpecChanged(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Refuses a worker that was banned or dropped for silence.
fn still_in(s: &Scheduler, worker: WorkerId) -> Result<(), ApiError> {
    if s.is_banned(worker) {
        return Err(banned());
    }
    if !s.is_alive(worker) {
        return Err(ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            codes::SESSION,
            "this worker was dropped for silence; join again with a fresh ticket",
        ));
    }
    Ok(())
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::internal("the job store", e)
}

impl JobMaster {
    /// Creates a job master for a new job and records the job.
    pub async fn create(config: JobMasterConfig) -> Result<Arc<Self>, StoreError> {
        let records = Records::new(config.store.clone(), &config.job);
        records
            .put_job(&JobRecord {
                job: config.job.clone(),
                spec: config.spec.clone(),
                created: tormr_core::unix_now(),
            })
            .await?;
        let scheduler = Scheduler::new(&config.spec, config.scheduler.clone());
        Ok(Arc::new(Self::assemble(config, records, scheduler)))
    }

    /// Brings back a job master from its store after a crash: input buckets
    /// and their keys, finished tasks (not redone), the cluster it was matched
    /// through and the workers' sessions (so workers still retrying carry on
    /// without a new ticket). What was leased is simply not there: it is
    /// queued again.
    pub async fn resume(mut config: JobMasterConfig) -> Result<(Arc<Self>, Resumed), ResumeError> {
        let records = Records::new(config.store.clone(), &config.job);
        let job = records
            .job()
            .await?
            .ok_or_else(|| ResumeError::NoJob(config.job.clone()))?;
        if job.spec != config.spec {
            return Err(ResumeError::SpecChanged(config.job.clone()));
        }
        let resumes = records.resumes().await? + 1;
        records.put_resumes(resumes).await?;
        config.scheduler.attempt_base = resumes.saturating_mul(ATTEMPTS_PER_RUN);
        let mut scheduler = Scheduler::new(&config.spec, config.scheduler.clone());
        let inputs = records.inputs().await?;
        for input in &inputs {
            scheduler.add_input(input.clone());
        }
        let input_closed = records.input_closed().await?.is_some();
        if input_closed {
            scheduler.close_input();
        }
        let tasks = records.tasks().await?;
        for (task, result) in &tasks {
            scheduler.restore(*task, result.clone());
        }
        let sessions = records.sessions().await?;
        let cluster = records.cluster().await?;
        let jm = Self::assemble(config, records, scheduler);
        jm.restore_sessions(&sessions).await?;
        // Not put back: the owner posts a fresh request and records it with
        // this one among its `earlier` requests; until then new workers are
        // told to wait rather than have their tickets checked.
        let resumed = Resumed {
            earlier_cluster: cluster,
            resumes,
            inputs: inputs.len() as u32,
            input_closed,
            tasks_done: tasks.len() as u32,
            sessions: sessions.len() as u32,
        };
        Ok((Arc::new(jm), resumed))
    }

    /// Puts the stored sessions back, each worker to rejoin with the standing
    /// the trust book gives it now.
    async fn restore_sessions(&self, stored: &[(String, SessionRecord)]) -> Result<(), StoreError> {
        for (token, session) in stored {
            let record = self.trust.get(&session.pseudonym).await?;
            if record.banned.is_some() {
                continue;
            }
            let standing = Standing {
                trust: record.trust(&self.spec.limits.verify),
                trusted: self.trusted_workers.contains(&session.pseudonym),
            };
            let mut sessions = self.sessions();
            sessions.by_token.insert(token.clone(), session.worker);
            sessions.workers.insert(
                session.worker,
                Session {
                    pseudonym: session.pseudonym,
                },
            );
            sessions.returning.insert(session.worker, standing);
        }
        Ok(())
    }

    fn assemble(config: JobMasterConfig, records: Records, scheduler: Scheduler) -> Self {
        let (version, _) = watch::channel(0);
        JobMaster {
            job: config.job,
            spec: config.spec,
            identity: config.identity,
            datalayer: config.datalayer,
            secret: config.secret,
            files: config.files,
            image_chunks: config
                .image
                .iter()
                .flat_map(|i| i.archive.chunks.iter().enumerate())
                .map(|(n, d)| (*d, n))
                .collect(),
            image: config.image,
            endorsement: config.endorsement,
            heartbeat_secs: config.heartbeat_secs,
            data: config.data,
            clock: config.clock,
            records,
            trust: config.trust,
            trusted_workers: config.trusted_workers,
            bans: config.bans,
            scheduler: Mutex::new(scheduler),
            sessions: Mutex::new(Sessions::default()),
            cluster: Mutex::new(None),
            matched_after: Mutex::new(None),
            version,
        }
    }

    pub fn job(&self) -> &JobId {
        &self.job
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    pub fn public_key(&self) -> PublicKey {
        self.identity.public()
    }

    fn sched(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Watches for changes (status pages, the owner's progress display).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Records the board and request this job was matched through; tickets are
    /// accepted only from that board for that request.
    pub async fn set_cluster(&self, record: ClusterRecord) -> Result<(), StoreError> {
        self.records.put_cluster(&record).await?;
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
        self.bump();
        Ok(())
    }

    /// Whether any worker is in the job and not dropped.
    pub fn has_live_workers(&self) -> bool {
        let ids: Vec<WorkerId> = self.sessions().workers.keys().copied().collect();
        let sched = self.sched();
        ids.iter().any(|w| sched.is_alive(*w))
    }

    /// Records when the cluster was matched (for the owner's summary).
    pub fn note_matched(&self, after: Duration) {
        *self.matched_after.lock().unwrap_or_else(|p| p.into_inner()) = Some(after);
    }

    pub fn matched_after(&self) -> Option<Duration> {
        *self.matched_after.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an uploaded input bucket (and its key) as a map task.
    pub async fn add_input(&self, input: BucketRef) -> Result<(), StoreError> {
        let index = self.sched().add_input(input.clone());
        if let Some(index) = index {
            self.records.put_input(index, &input).await?;
            self.bump();
        }
        Ok(())
    }

    /// No more input buckets will come.
    pub async fn close_input(&self, count: u32) -> Result<(), StoreError> {
        self.records.close_input(count).await?;
        self.sched().close_input();
        self.bump();
        Ok(())
    }

    /// Fails the job from the owner's side (e.g. the input could not be read).
    pub fn abort(&self, reason: &str) {
        let mut s = self.sched();
        if *s.state() == JobState::Running {
            s.abort(reason);
        }
        drop(s);
        self.bump();
    }

    pub fn state(&self) -> JobState {
        self.sched().state().clone()
    }

    pub fn outputs(&self) -> Vec<BucketRef> {
        self.sched().outputs()
    }

    /// Mints a token for `verb` on one bucket of this job.
    pub fn mint(&self, bucket: &tormr_core::ids::BucketId, verb: Verb) -> String {
        let ttl = self.spec.limits.task_timeout_secs + 3600;
        self.secret.mint(&Capability {
            job: self.job.clone(),
            bucket: Some(bucket.clone()),
            verb,
            expires: tormr_core::unix_now() + ttl,
        })
    }

    /// Mints the owner's token to delete every bucket of this job.
    pub fn mint_delete(&self) -> String {
        self.secret.mint(&Capability {
            job: self.job.clone(),
            bucket: None,
            verb: Verb::Delete,
            expires: tormr_core::unix_now() + 3600,
        })
    }

    /// A full status for the owner.
    pub fn status(&self) -> JobStatus {
        let sched = self.sched();
        let sessions = self.sessions();
        let workers = sched
            .workers()
            .into_iter()
            .map(|w| WorkerStatus {
                pseudonym: sessions
                    .workers
                    .get(&w.id)
                    .map(|s| s.pseudonym.short())
                    .unwrap_or_default(),
                running: w.running,
                done: w.done,
                failed: w.failed,
                input_buckets: w.input_buckets,
                alive: w.alive,
            })
            .collect();
        JobStatus {
            job: self.job.clone(),
            state: sched.state().clone(),
            phases: sched.phases(),
            workers,
            counters: sched.job_counters(),
        }
    }

    /// Whether every worker still in the job has been told it is done, so
    /// the owner can stop serving without leaving one asking a dead service
    /// (over Tor it would retry for minutes before giving up).
    pub fn all_workers_told_done(&self) -> bool {
        let waiting: Vec<WorkerId> = {
            let sessions = self.sessions();
            let told = &sessions.told_done;
            sessions
                .workers
                .keys()
                .filter(|w| !told.contains(w))
                .copied()
                .collect()
        };
        let sched = self.sched();
        waiting.iter().all(|w| !sched.is_alive(*w))
    }

    pub fn attempt_tally(&self) -> crate::scheduler::AttemptTally {
        self.sched().tally().clone()
    }

    /// Waits until the job has succeeded or failed.
    pub async fn finished(&self) -> JobState {
        let mut changes = self.subscribe();
        loop {
            let state = self.state();
            if state != JobState::Running {
                return state;
            }
            if changes.changed().await.is_err() {
                return self.state();
            }
        }
    }

    /// Expires leases and drops silent workers once a second until cancelled.
    pub fn spawn_monitor(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = every.tick() => {}
                }
                let changed = {
                    let mut s = this.sched();
                    let changed = s.tick(this.clock.now_ms());
                    if let Some(why) = s.stuck() {
                        s.abort(&why);
                        true
                    } else {
                        changed
                    }
                };
                if changed {
                    if let Err(e) = this.persist_settled().await {
                        tracing::warn!(
                            "could not store settled tasks (a resumed job would redo them): {e}"
                        );
                    }
                    this.bump();
                }
            }
        })
    }

    fn session(&self, token: &str) -> Result<WorkerId, ApiError> {
        let (worker, returning) = {
            let mut sessions = self.sessions();
            let worker = sessions.by_token.get(token).copied().ok_or_else(|| {
                ApiError::new(
                    http::StatusCode::UNAUTHORIZED,
                    codes::SESSION,
                    "unknown session: join the job again with a fresh ticket from the bulletin",
                )
            })?;
            (worker, sessions.returning.remove(&worker))
        };
        if let Some(standing) = returning {
            tracing::info!("worker #{worker} is back after the job master's restart");
            self.sched().join_as(worker, self.clock.now_ms(), standing);
            self.bump();
        }
        Ok(worker)
    }

    /// Redeems a join ticket.
    pub async fn join(&self, join: Join) -> Result<Joined, ApiError> {
        let cluster = self
            .cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                ApiError::busy("the job is not matched with a board yet; try again shortly")
            })?;
        let ticket = join
            .ticket
            .open_by(&cluster.board)
            .map_err(|e| ApiError::forbidden(format!("ticket refused: {e}")))?;
        let now = tormr_core::unix_now();
        if ticket.job_key != self.public_key() || !cluster.admits(&ticket.request) {
            return Err(ApiError::forbidden("ticket refused: it is for another job"));
        }
        if ticket.expires_at < now {
            return Err(ApiError::forbidden(
                "ticket refused: it expired; register with the bulletin again",
            ));
        }
        let proof = join
            .proof
            .open_by(&ticket.worker)
            .map_err(|e| ApiError::forbidden(format!("proof refused: {e}")))?;
        if proof.ticket != ticket.ticket
            || proof.job_key != self.public_key()
            || proof.issued_at.abs_diff(now) > 300
        {
            return Err(ApiError::forbidden(
                "proof refused: it does not match the ticket, or is stale",
            ));
        }
        let record = self.trust.get(&ticket.worker).await.map_err(store_error)?;
        if record.banned.is_some() {
            return Err(ApiError::forbidden(
                "this pseudonym is banned by the job's owner: an answer of it was found wrong",
            ));
        }
        let standing = Standing {
            trust: record.trust(&self.spec.limits.verify),
            trusted: self.trusted_workers.contains(&ticket.worker),
        };
        if !self
            .records
            .redeem_ticket(&ticket.ticket, &ticket.worker)
            .await
            .map_err(store_error)?
        {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                codes::TICKET_USED,
                "this ticket was already redeemed; get a new one from the bulletin",
            ));
        }
        let token = b64(&tormr_core::random::bytes::<32>());
        let worker = {
            let mut sessions = self.sessions();
            // Numbers continue past a resumed run's workers.
            let worker = sessions.workers.keys().next_back().map_or(0, |w| w + 1);
            sessions.by_token.insert(token.clone(), worker);
            sessions.workers.insert(
                worker,
                Session {
                    pseudonym: ticket.worker,
                },
            );
            worker
        };
        self.records
            .put_session(
                &token,
                &SessionRecord {
                    worker,
                    pseudonym: ticket.worker,
                },
            )
            .await
            .map_err(store_error)?;
        self.sched().join_as(worker, self.clock.now_ms(), standing);
        tracing::info!(
            "worker {} joined job {} as #{worker}",
            ticket.worker.short(),
            self.job
        );
        self.bump();
        Ok(Joined {
            session: token,
            job: self.job.clone(),
            datalayer: self.datalayer.to_string(),
            spec: self.spec.clone(),
            heartbeat_secs: self.heartbeat_secs,
            endorsement: self.endorsement.clone(),
        })
    }

    /// Long-polls for a task.
    pub async fn lease(&self, token: &str, lease: Lease) -> Result<LeaseAnswer, ApiError> {
        let worker = self.session(token)?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(lease.wait_secs.min(MAX_WAIT_SECS));
        let mut changes = self.subscribe();
        loop {
            if let Some(answer) = self.lease_now(worker, &lease)? {
                return Ok(answer);
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Ok(LeaseAnswer::Wait);
            }
        }
    }

    /// Answers a lease at once: a task, done, or `None` when there is
    /// nothing for this worker yet.
    fn lease_now(&self, worker: WorkerId, lease: &Lease) -> Result<Option<LeaseAnswer>, ApiError> {
        let assignment = {
            let mut s = self.sched();
            let now = self.clock.now_ms();
            still_in(&s, worker)?;
            s.extend(worker, &lease.running, now);
            s.assign(worker, now)
        };
        match assignment {
            Assignment::Task(leased) => {
                self.bump();
                Ok(Some(LeaseAnswer::Task {
                    task: Box::new(self.assignment(*leased)),
                }))
            }
            Assignment::Done => {
                self.sessions().told_done.insert(worker);
                Ok(Some(LeaseAnswer::Done))
            }
            Assignment::CapReached { held, cap } => Err(ApiError::new(
                http::StatusCode::FORBIDDEN,
                codes::BUCKET_CAP,
                format!(
                    "this worker already holds {held} of the owner's input buckets, the owner's cap is {cap}"
                ),
            )),
            Assignment::Wait => Ok(None),
        }
    }

    /// Turns a lease into what the worker needs: commands, keys, tokens, environment.
    fn assignment(&self, leased: Leased) -> TaskAssignment {
        let task = leased.attempt.task;
        let step = &self.spec.steps[task.step as usize];
        let is_map = task.kind == TaskKind::Map;
        let inputs = leased
            .inputs
            .iter()
            .map(|b| InputBucket {
                bucket: b.bucket.clone(),
                key: b.key.clone(),
                token: self.mint(&b.bucket, Verb::Get),
                sealed_bytes: b.sealed_bytes,
                plain_bytes: b.plain_bytes,
            })
            .collect();
        let outputs = leased
            .outputs
            .iter()
            .map(|o| OutputBucket {
                partition: o.partition,
                bucket: o.bucket.clone(),
                key: o.key.clone(),
                token: self.mint(&o.bucket, Verb::Put),
            })
            .collect();
        let mut env = self.spec.conf_env(task.step as usize);
        let letter = task.kind.letter();
        let job = self
            .job
            .as_str()
            .trim_start_matches("job-")
            .replace('-', "_");
        env.insert("mapreduce_job_id".into(), format!("job_{job}"));
        env.insert(
            "mapreduce_task_id".into(),
            format!("task_{job}_{letter}_{:06}", task.index),
        );
        env.insert(
            "mapreduce_task_attempt_id".into(),
            format!(
                "attempt_{job}_{letter}_{:06}_{}",
                task.index, leased.attempt.attempt
            ),
        );
        env.insert("mapreduce_task_partition".into(), task.index.to_string());
        env.insert("mapreduce_task_ismap".into(), is_map.to_string());
        env.insert("mapreduce_job_reduces".into(), step.reduces.to_string());
        env.insert("tormr_step".into(), task.step.to_string());
        if is_map {
            let (name, start, length) = match leased.inputs.first().and_then(|b| b.source.clone()) {
                Some(src) => (src.name, src.offset, src.length),
                None => (
                    format!("part-{:05}", task.index),
                    0,
                    leased.inputs.first().map(|b| b.plain_bytes).unwrap_or(0),
                ),
            };
            env.insert("mapreduce_map_input_file".into(), name.clone());
            env.insert("map_input_file".into(), name);
            env.insert("mapreduce_map_input_start".into(), start.to_string());
            env.insert("mapreduce_map_input_length".into(), length.to_string());
        }
        TaskAssignment {
            attempt: leased.attempt,
            kind: task.kind,
            command: if is_map {
                step.mapper.clone()
            } else {
                step.reducer.clone()
            },
            combiner: if is_map && !step.is_map_only() {
                step.combiner.clone()
            } else {
                None
            },
            partitions: if is_map && !step.is_map_only() {
                step.reduces
            } else {
                0
            },
            keys: step.keys.clone(),
            inputs,
            outputs,
            env,
            timeout_secs: self.spec.limits.task_timeout_secs,
            sort_buffer_bytes: self.spec.limits.sort_buffer_bytes,
            compression_level: self.spec.limits.compression_level,
        }
    }

    pub async fn heartbeat(&self, token: &str, hb: Heartbeat) -> Result<HeartbeatAnswer, ApiError> {
        let worker = self.session(token)?;
        let mut s = self.sched();
        still_in(&s, worker)?;
        let cancel = s.heartbeat(worker, &hb.running, self.clock.now_ms());
        Ok(HeartbeatAnswer {
            cancel,
            job_done: *s.state() != JobState::Running,
        })
    }

    /// Takes a worker's report, checking that claimed outputs are really stored.
    pub async fn report(&self, token: &str, report: Report) -> Result<ReportAnswer, ApiError> {
        let worker = self.session(token)?;
        let counters = report.counters.truncated(64, 256);
        let checked = match &report.outcome {
            Outcome::Succeeded { outputs } => {
                self.sched().check_report(worker, &report.attempt, outputs)
            }
            Outcome::Failed { .. } => Ok(()),
        };
        let result = match &report.outcome {
            Outcome::Succeeded { outputs } => match checked {
                Err(rejected) => Err(rejected),
                Ok(()) => match self.check_stored(outputs).await {
                    Ok(()) => self.sched().succeed(
                        worker,
                        &report.attempt,
                        outputs,
                        &counters,
                        report.elapsed_ms,
                    ),
                    Err(why) => {
                        tracing::warn!(
                            "attempt {} claimed outputs the data layer does not hold: {why}",
                            report.attempt
                        );
                        self.sched().fail(
                            worker,
                            &report.attempt,
                            &format!("outputs missing on the data layer: {why}"),
                            "",
                        )
                    }
                },
            },
            Outcome::Failed {
                reason,
                stderr_tail,
                ..
            } => {
                let tail: String = stderr_tail
                    .chars()
                    .rev()
                    .take(8192)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let reason: String = reason.chars().take(1024).collect();
                tracing::info!("attempt {} failed: {reason}", report.attempt);
                self.sched().fail(worker, &report.attempt, &reason, &tail)
            }
        };
        self.record_verdicts().await?;
        let mut answer = match result {
            Ok(()) => {
                self.persist_settled().await.map_err(store_error)?;
                ReportAnswer {
                    accepted: true,
                    note: String::new(),
                    next: None,
                }
            }
            Err(Rejected::LeaseLost(why)) => ReportAnswer {
                accepted: false,
                note: why,
                next: None,
            },
            Err(Rejected::BadOutputs(a, why)) => {
                let _ = self.sched().fail(worker, &report.attempt, &why, "");
                ReportAnswer {
                    accepted: false,
                    note: format!("{a}: {why}"),
                    next: None,
                }
            }
        };
        self.bump();
        if let Some(lease) = &report.next {
            // The report is taken whatever the lease meets: a cap or a ban
            // reaches the worker on its next plain lease.
            answer.next = Some(
                self.lease_now(worker, lease)
                    .ok()
                    .flatten()
                    .unwrap_or(LeaseAnswer::Wait),
            );
        }
        Ok(answer)
    }

    /// Writes down what verification learnt: trust earned, pseudonyms banned
    /// (also passed on for the bulletin), answers that are void.
    async fn record_verdicts(&self) -> Result<(), ApiError> {
        let (events, forgotten) = {
            let mut s = self.sched();
            (s.take_events(), s.take_forgotten())
        };
        for task in forgotten {
            self.records.forget_task(&task).await.map_err(store_error)?;
        }
        for event in events {
            let (TrustEvent::Agreed(w) | TrustEvent::Banned(w)) = event;
            let Some(pseudonym) = self.sessions().workers.get(&w).map(|s| s.pseudonym) else {
                continue;
            };
            match event {
                TrustEvent::Agreed(_) => {
                    self.trust.agreed(&pseudonym).await.map_err(store_error)?;
                }
                TrustEvent::Banned(_) => {
                    let why = format!(
                        "an answer in job {} disagreed with the verified one",
                        self.job
                    );
                    self.trust
                        .ban(&pseudonym, &why)
                        .await
                        .map_err(store_error)?;
                    tracing::warn!("worker {} (#{w}) banned: {why}", pseudonym.short());
                    if let Some(bans) = &self.bans
                        && bans.try_send(pseudonym).is_err()
                    {
                        tracing::warn!(
                            "could not pass the ban of {} on to the bulletin",
                            pseudonym.short()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores the tasks whose answers were settled, so a resumed job does
    /// not redo them.
    /// A task counts as done in progress only once stored; one that could
    /// not be stored is tried again on the next change.
    async fn persist_settled(&self) -> Result<(), StoreError> {
        let mut settled = self.sched().take_settled().into_iter();
        while let Some((task, result)) = settled.next() {
            if let Err(e) = self.records.put_task(&task, &result).await {
                let left = std::iter::once(task).chain(settled.map(|(t, _)| t));
                self.sched().store_again(left);
                return Err(e);
            }
            self.sched().stored(task);
        }
        Ok(())
    }

    /// Checks that each claimed output is stored whole: by its receipt from
    /// the data layer when it has a good one, else by asking the data layer.
    async fn check_stored(
        &self,
        outputs: &[tormr_core::wire::job::WrittenBucket],
    ) -> Result<(), String> {
        for out in outputs {
            let receipted = out.receipt.as_deref().is_some_and(|r| {
                self.secret
                    .check_receipt(r, &self.job, &out.bucket, out.summary.sealed_bytes)
            });
            if receipted {
                continue;
            }
            let token = self.mint(&out.bucket, Verb::Get);
            let meta = self
                .data
                .head(&out.bucket, &token)
                .await
                .map_err(|e| e.to_string())?;
            if meta.size != out.summary.sealed_bytes {
                return Err(format!(
                    "bucket {} holds {} bytes, the report says {}",
                    out.bucket, meta.size, out.summary.sealed_bytes
                ));
            }
        }
        Ok(())
    }

    /// The path of a job file, if `digest` names one.
    pub fn file(&self, token: &str, digest: &Digest) -> Result<PathBuf, ApiError> {
        self.session(token)?;
        self.files
            .get(digest)
            .cloned()
            .ok_or_else(|| ApiError::not_found("no such job file"))
    }

    /// Where chunk `digest` of the job's image archive lies: the file, the
    /// offset and the length.
    pub fn image_chunk(
        &self,
        token: &str,
        digest: &Digest,
    ) -> Result<(PathBuf, u64, u64), ApiError> {
        self.session(token)?;
        let (Some(image), Some(n)) = (&self.image, self.image_chunks.get(digest)) else {
            return Err(ApiError::not_found("no such image chunk"));
        };
        let (offset, len) = image.archive.chunk_range(*n);
        Ok((image.path.clone(), offset, len))
    }

    pub fn records(&self) -> &Records {
        &self.records
    }
}
