//! The owner's side of one job: start the job master, post the cluster
//! request, upload the input, follow the job, fetch the output, clean up.
//! The same code drives a local cluster and one over Tor; only the
//! [`Cluster`] it is given differs.

use crate::jobdef::JobDefinition;
use crate::progress::Ui;
use crate::resume::JobStart;
use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tormr_bulletin::BulletinClient;
use tormr_core::counters::Counters;
use tormr_core::identity::{Identity, Signed};
use tormr_core::ids::TaskKind;
use tormr_core::store::redb::RedbStore;
use tormr_core::token::TokenSecret;
use tormr_core::wire::bulletin::{ClusterRequest, ExecutorKind, RequestState, Requirements};
use tormr_core::wire::job::{JobState, OwnerEndorsement};
use tormr_datalayer::DataClient;
use tormr_jobmaster::clock::SystemClock;
use tormr_jobmaster::input::{UploadPlan, list_inputs, plan_slices, upload_inputs};
use tormr_jobmaster::output::{check_output_free, fetch_outputs};
use tormr_jobmaster::records::ClusterRecord;
use tormr_jobmaster::scheduler::SchedulerConfig;
use tormr_jobmaster::service::{OwnerApi, WorkerApi};
use tormr_jobmaster::trust::TrustBook;
use tormr_jobmaster::{JobMaster, JobMasterConfig};
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{Address, HttpClient, Server, ServerConfig, Transport};

/// How long the owner keeps serving a finished job until every worker has
/// heard that it is done.
const TOLD_DONE_GRACE: Duration = Duration::from_secs(15);

/// How long the owner's Tor client outlives the job master's service, so the
/// last "job done" answers reach the workers (seen in CI: without it, a worker
/// whose answer was lost retried an unreachable job master for 5 minutes).
const ANSWERS_DRAIN: Duration = Duration::from_secs(3);

/// Where a job runs: how to reach the board and the data layer.
pub struct Cluster {
    pub transport: Arc<dyn Transport>,
    /// The board's replicas (one or more addresses serving one board).
    pub bulletins: Vec<Address>,
    /// The data layer as the owner reaches it.
    pub datalayer: Address,
    /// The data layer as workers reach it.
    pub datalayer_for_workers: Address,
    /// Shared with the data layer.
    pub secret: TokenSecret,
    pub workers: u32,
    pub min_workers: u32,
    /// How long the request may gather before settling for `min_workers`.
    pub wait: Duration,
    /// Parallel lanes for bulk transfers.
    pub lanes: usize,
    /// How the owner reaches the data layer (in-process memory, loopback, or Tor).
    pub data_transport: Arc<dyn Transport>,
    /// The owner's long-term key, when the job runs on her own workers only
    /// (those started `--trusted-by` it).
    pub owner: Option<Arc<Identity>>,
    /// Pseudonyms of workers the owner trusts fully (her local workers, or
    /// the arbiters she named): their answers are not second-guessed and
    /// they arbitrate disputes.
    pub trusted_workers: std::collections::BTreeSet<tormr_core::identity::PublicKey>,
    /// The owner's long-term key given with `--owner-key`; the own workers'
    /// key (`--own-workers`) wins over it, and without either one kept in
    /// the state folder is used.
    pub owner_key: Option<Arc<Identity>>,
    /// Her own workers to match as arbiters (`--arbiter`).
    pub arbiters: Vec<tormr_core::identity::PublicKey>,
}

#[derive(Debug, Serialize, Default)]
pub struct PhaseSummary {
    pub step: u32,
    pub phase: String,
    pub tasks: u32,
}

#[derive(Debug, Serialize, Default)]
pub struct Timings {
    pub matched_s: f64,
    pub upload_s: f64,
    pub run_s: f64,
    pub download_s: f64,
    pub total_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    pub task: String,
    pub reason: String,
    pub stderr_tail: String,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub job: String,
    pub state: String,
    pub output: PathBuf,
    pub parts: usize,
    pub input_bytes: u64,
    pub input_buckets: u32,
    pub workers: u32,
    pub phases: Vec<PhaseSummary>,
    pub attempts: AttemptSummary,
    pub counters: Counters,
    pub timings: Timings,
    pub error: Option<Failure>,
    /// What a resumed run found done by the runs before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<ResumedSummary>,
}

#[derive(Debug, Serialize)]
pub struct ResumedSummary {
    /// How many times the job has been resumed, this run included.
    pub resumes: u32,
    pub input_buckets_uploaded: u32,
    pub tasks_done: u32,
    pub sessions_kept: u32,
}

#[derive(Debug, Serialize, Default)]
pub struct AttemptSummary {
    pub launched: u32,
    pub failed: u32,
    pub lost: u32,
    pub speculative: u32,
    /// Copies run to check untrusted answers, arbiters included.
    pub verification_copies: u32,
    pub disputes: u32,
    /// Tasks recomputed because a banned worker had answered them.
    pub recomputed: u32,
    pub banned: u32,
    /// Ringers handed to volunteers, and how many they answered wrongly.
    pub ringer_probes: u32,
    pub ringers_failed: u32,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Runs a job on `cluster` and fetches its output into `output`. Cancelling
/// `interrupt` fails the job and cleans up as any failure does.
pub async fn run_job(
    cluster: &Cluster,
    def: JobDefinition,
    inputs: &[PathBuf],
    output: &Path,
    ui: &Ui,
    interrupt: CancellationToken,
    start: &mut JobStart,
) -> Result<Summary> {
    let state = &start.owner_dir();
    let started = Instant::now();
    check_output_free(output)?;
    if def.spec.limits.verify.ringers > 0 && cluster.trusted_workers.is_empty() {
        return Err(crate::UsageError(
            "tormr.verify.ringers: ringers are answered first by a worker of your own; name one with --arbiter PSEUDONYM (a `tormr worker --trusted-by YOUR_KEY`), or drop the setting".into(),
        )
        .into());
    }
    let files = Arc::new(list_inputs(inputs)?);
    let input_bytes: u64 = files.iter().map(|f| f.size).sum();
    let bucket_bytes = def.spec.limits.bucket_bytes;
    let slices = {
        let files = files.clone();
        tokio::task::spawn_blocking(move || plan_slices(&files, bucket_bytes)).await??
    };
    let job = start.manifest.job.clone();
    let identity = start.identity.clone();
    std::fs::create_dir_all(state)
        .with_context(|| format!("creating the state folder {}", state.display()))?;
    let store = Arc::new(RedbStore::open(&state.join(format!("{job}.redb")))?);
    let trust_path = state.join("trust.redb");
    let trust = TrustBook::new(Arc::new(RedbStore::open(&trust_path).with_context(|| {
        format!(
            "opening the trust book {} (another `tormr submit` with the same --state may hold it: wait for it, or give this job another --state)",
            trust_path.display()
        )
    })?));
    // Over Tor each lane is its own circuit; elsewhere one lane is enough.
    let data_lanes: Vec<HttpClient> = match cluster.data_transport.isolated() {
        Some(_) => (0..cluster.lanes.max(1))
            .map(|_| {
                let lane = cluster
                    .data_transport
                    .isolated()
                    .unwrap_or_else(|| cluster.data_transport.clone());
                HttpClient::new(lane, cluster.datalayer.clone())
            })
            .collect(),
        None => vec![HttpClient::new(
            cluster.data_transport.clone(),
            cluster.datalayer.clone(),
        )],
    };
    let data = DataClient::new(data_lanes, job.clone());
    // The owner's long-term key (her own workers' key, or one kept in the
    // state folder) vouches for the job key: the board then keeps the
    // pseudonyms she banned out of her requests.
    let owner_key = match (&cluster.owner, &cluster.owner_key) {
        (Some(key), _) | (None, Some(key)) => key.clone(),
        (None, None) => {
            let path = state.join("owner.key");
            Arc::new(
                Identity::load_or_create(&path)
                    .with_context(|| format!("the owner key {}", path.display()))?,
            )
        }
    };
    let endorsement = Signed::sign(
        &owner_key,
        &OwnerEndorsement {
            job_key: identity.public(),
            issued_at: tormr_core::unix_now(),
        },
    );
    let (ban_tx, ban_rx) = tokio::sync::mpsc::channel(64);
    let config = JobMasterConfig {
        job: job.clone(),
        spec: def.spec.clone(),
        identity: identity.clone(),
        datalayer: cluster.datalayer_for_workers.clone(),
        secret: cluster.secret.clone(),
        store,
        files: def.files,
        image: def.image,
        endorsement: Some(endorsement.clone()),
        scheduler: SchedulerConfig::default(),
        heartbeat_secs: 10,
        data: data.clone(),
        clock: Arc::new(SystemClock),
        trust,
        trusted_workers: cluster.trusted_workers.clone(),
        bans: Some(ban_tx),
    };
    let (jm, resumed) = if start.resuming {
        let (jm, resumed) = JobMaster::resume(config).await?;
        ui.say(&format!(
            "job {job} resumed: {} of {} input bucket(s) were uploaded, {} task(s) were done, {} worker session(s) kept",
            resumed.inputs,
            slices.len(),
            resumed.tasks_done,
            resumed.sessions
        ));
        (jm, Some(resumed))
    } else {
        (JobMaster::create(config).await?, None)
    };
    if resumed.is_some() {
        check_same_input(&jm, &files, &slices).await?;
    }
    let earlier_request = resumed.as_ref().and_then(|r| r.earlier_cluster.clone());

    let cancel = CancellationToken::new();
    let _monitor = jm.spawn_monitor(cancel.clone());
    // An onion service's address is known before it runs: then the job master
    // is published only once the board has matched its workers, and only to
    // them (restricted discovery). A loopback service is published at once,
    // on the port it had before if the job is resumed. A resumed job master
    // is published at once over Tor too, unrestricted: the workers of the
    // crashed run must reach it again as well as any matched anew.
    let worker_spec = ServiceSpec {
        port: start.port("job"),
        ..ServiceSpec::new(format!("job-{}", &job.as_str()[4..12]))
    };
    let worker_api: WorkerApiSlot = Arc::new(tokio::sync::Mutex::new(None));
    let reserved = match start.resuming {
        true => None,
        false => cluster.transport.reserve(&worker_spec).await?,
    };
    let job_address = match reserved {
        Some(address) => address,
        None => {
            let server = Server::spawn(
                cluster.transport.publish(&worker_spec).await?,
                Arc::new(WorkerApi(jm.clone())),
                worker_facing(),
            );
            let address = server.address().clone();
            *worker_api.lock().await = Some(server);
            address
        }
    };
    if !job_address.is_onion() {
        start
            .manifest
            .ports
            .insert("job".into(), job_address.port());
    }
    start.save()?;
    let restricted = worker_api
        .lock()
        .await
        .is_none()
        .then(|| (cluster.transport.clone(), worker_spec.clone()));
    let owner_api = Server::spawn(
        TcpTransport::new()
            .publish(&ServiceSpec::new("status"))
            .await?,
        Arc::new(OwnerApi(jm.clone())),
        ServerConfig::default(),
    );
    ui.say(&format!(
        "job {job}: status page at http://{}/",
        owner_api.address()
    ));

    let board = BulletinClient::for_replicas(cluster.transport.clone(), &cluster.bulletins)
        .context("a cluster names at least one bulletin board")?;
    let stop_reporting = CancellationToken::new();
    // Stops the reporter on any early return as well.
    let _reporting = stop_reporting.clone().drop_guard();
    let ban_reporter = tokio::spawn(report_bans(
        board.clone(),
        owner_key.clone(),
        ban_rx,
        stop_reporting.clone(),
    ));
    // The crashed run's request stays up until this run ends: its workers,
    // unable to reach the job master while it comes back, ask the board
    // whether the job still stands, and a withdrawal now would send them
    // away. A fresh request gathers any that left.
    let request = ClusterRequest {
        job_address: job_address.to_string(),
        workers: cluster.workers,
        min_workers: cluster.min_workers,
        wait_secs: cluster.wait.as_secs(),
        requirements: Requirements {
            // A job without an image runs as plain processes: only workers
            // that accept unsandboxed code may take it.
            executor: Some(if def.spec.image.is_some() {
                ExecutorKind::Docker
            } else {
                ExecutorKind::Process
            }),
            trusted_by: cluster.owner.as_ref().map(|o| o.public()),
            arbiters: cluster.arbiters.clone(),
            ..Requirements::default()
        },
        issued_at: tormr_core::unix_now(),
        owner: Some(endorsement),
    };
    let posted = tormr_net::client::with_retries(5, || board.post_request(&identity, &request))
        .await
        .context("posting the cluster request to the bulletin")?;
    jm.set_cluster(ClusterRecord {
        board: posted.board,
        request: posted.request.clone(),
        earlier: earlier_request
            .iter()
            .flat_map(|e| e.all_requests().cloned())
            .collect(),
    })
    .await?;
    ui.say(&format!(
        "cluster request posted: waiting for {} worker(s)",
        cluster.workers
    ));
    let gathering = tokio::spawn(watch_match(
        jm.clone(),
        board.clone(),
        posted.request.clone(),
        cluster.workers,
        started,
        restricted,
        worker_api.clone(),
    ));

    // Upload while the cluster gathers; maps start as buckets land.
    let upload_started = Instant::now();
    let bar = ui.bytes_bar("upload", input_bytes);
    let progress_bar = bar.clone();
    let buckets = slices.len() as u32;
    let staging = state.join(format!("{job}-staging"));
    std::fs::create_dir_all(&staging)?;
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(4);
    let uploaded = match &resumed {
        Some(r) if r.input_closed => Ok(r.inputs),
        _ => {
            let plan = UploadPlan {
                first: resumed.as_ref().map_or(0, |r| r.inputs),
                epoch: resumed.as_ref().map_or(0, |r| r.resumes),
            };
            upload_inputs(
                &jm,
                &data,
                files,
                slices,
                plan,
                &staging,
                parallel,
                Arc::new(move |n| progress_bar.inc(n)),
            )
            .await
        }
    };
    bar.finish_and_clear();
    let upload_s = upload_started.elapsed();
    match uploaded {
        Ok(n) => {
            jm.close_input(n).await?;
            ui.say(&format!(
                "input uploaded: {} in {n} sealed bucket(s) in {:.1} s",
                human_bytes(input_bytes),
                upload_s.as_secs_f64()
            ));
        }
        Err(e) => jm.abort(&format!("the input could not be uploaded: {e}")),
    }

    // Follow the job.
    let mut changes = jm.subscribe();
    let state_now = loop {
        ui.phases(&jm.status().phases);
        let s = jm.state();
        if s != JobState::Running {
            break s;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break jm.state() },
            _ = interrupt.cancelled() => jm.abort("interrupted by the owner"),
        }
    };
    gathering.abort();
    let run_s = upload_started.elapsed();
    let matched_s = match gathering.await {
        Ok(Some(d)) => secs(d),
        _ => 0.0,
    };
    let matched_s = if matched_s == 0.0 {
        jm.matched_after().map(secs).unwrap_or(0.0)
    } else {
        matched_s
    };
    ui.clear();

    // The job is over: take it off the board now, while the output comes
    // down, so workers told it is done are not matched to it again.
    let withdraw = async {
        let _ = board.withdraw(&identity, &posted.request).await;
        for earlier in earlier_request.iter().flat_map(|e| e.all_requests()) {
            let _ = board.withdraw(&identity, earlier).await;
        }
    };
    let download_started = Instant::now();
    let download = async {
        match &state_now {
            JobState::Succeeded => {
                let total: u64 = jm.outputs().iter().map(|o| o.sealed_bytes).sum();
                let bar = ui.bytes_bar("download", total);
                let b = bar.clone();
                let parts =
                    fetch_outputs(&jm, &data, output, &staging, Arc::new(move |n| b.inc(n))).await;
                bar.finish_and_clear();
                match parts {
                    Ok(p) => (p.len(), None),
                    Err(e) => (
                        0,
                        Some(Failure {
                            task: "-".into(),
                            reason: e.to_string(),
                            stderr_tail: String::new(),
                        }),
                    ),
                }
            }
            JobState::Failed {
                task,
                reason,
                stderr_tail,
            } => (
                0,
                Some(Failure {
                    task: task.clone(),
                    reason: reason.clone(),
                    stderr_tail: stderr_tail.clone(),
                }),
            ),
            JobState::Running => (
                0,
                Some(Failure {
                    task: "-".into(),
                    reason: "the job master stopped".into(),
                    stderr_tail: String::new(),
                }),
            ),
        }
    };
    let ((parts, error), ()) = tokio::join!(download, withdraw);
    let download_s = download_started.elapsed();

    // Clean up: the board learns the last bans, the data layer forgets the
    // job.
    stop_reporting.cancel();
    if tokio::time::timeout(Duration::from_secs(60), ban_reporter)
        .await
        .is_err()
    {
        tracing::warn!("gave up reporting bans to the bulletin after 60 s");
    }
    if let Err(e) = data.delete_job(&jm.mint_delete()).await {
        tracing::warn!("could not delete the job's buckets from the data layer: {e}");
    }
    let _ = std::fs::remove_dir_all(&staging);
    if error.is_none() {
        // The output is out: the job's keys have no further use.
        if let Err(e) = jm.records().delete_all().await {
            tracing::warn!("could not remove the finished job's records: {e}");
        }
    }
    cancel.cancel();
    let status = jm.status();
    let tally = jm.attempt_tally();
    if let Some(server) = worker_api.lock().await.take() {
        // Let workers whose last lease request is still on its way hear that
        // the job is done, so they return to the board at once.
        let grace = Instant::now();
        while !jm.all_workers_told_done() && grace.elapsed() < TOLD_DONE_GRACE {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.shutdown(Duration::from_secs(2)).await;
        if cluster.transport.isolated().is_some() {
            // Over Tor an answer handed to the onion stream may still be
            // queued in this process: let it cross before Tor goes away.
            tokio::time::sleep(ANSWERS_DRAIN).await;
        }
    }
    owner_api.shutdown(Duration::from_secs(1)).await;

    Ok(Summary {
        job: job.to_string(),
        state: if error.is_none() {
            "succeeded".into()
        } else {
            "failed".into()
        },
        output: output.to_owned(),
        parts,
        input_bytes,
        input_buckets: buckets,
        workers: status.workers.len() as u32,
        phases: status
            .phases
            .iter()
            .map(|p| PhaseSummary {
                step: p.step,
                phase: if p.kind == Some(TaskKind::Reduce) {
                    "reduce".into()
                } else {
                    "map".into()
                },
                tasks: p.total,
            })
            .collect(),
        attempts: AttemptSummary {
            launched: tally.launched,
            failed: tally.failed,
            lost: tally.lost,
            speculative: tally.speculative,
            verification_copies: tally.verification_copies,
            disputes: tally.disputes,
            recomputed: tally.recomputed,
            banned: tally.banned,
            ringer_probes: tally.ringer_probes,
            ringers_failed: tally.ringers_failed,
        },
        counters: status.counters,
        timings: Timings {
            matched_s,
            upload_s: secs(upload_s),
            run_s: secs(run_s),
            download_s: secs(download_s),
            total_s: secs(started.elapsed()),
        },
        error,
        resumed: resumed.map(|r| ResumedSummary {
            resumes: r.resumes,
            input_buckets_uploaded: r.inputs,
            tasks_done: r.tasks_done,
            sessions_kept: r.sessions,
        }),
    })
}

/// A resumed job's uploaded buckets must be the slices the input cuts into
/// now: task i reads slice i.
async fn check_same_input(
    jm: &JobMaster,
    files: &[tormr_jobmaster::input::InputFile],
    slices: &[tormr_jobmaster::input::Slice],
) -> Result<()> {
    let stored = jm.records().inputs().await?;
    let changed = stored.len() > slices.len()
        || stored.iter().zip(slices).any(|(bucket, slice)| {
            bucket.source.as_ref().is_some_and(|s| {
                s.name != files[slice.file].name
                    || s.offset != slice.offset
                    || s.length != slice.length
            })
        });
    if changed {
        return Err(crate::UsageError(format!(
            "job {}: the input changed since the job was submitted (files were added, removed or edited); put it back as it was, or submit a new job",
            jm.job()
        ))
        .into());
    }
    Ok(())
}

/// Passes the job master's bans on to the bulletin, signed with the owner's
/// key, until stopped; then reports what is still queued and ends.
async fn report_bans(
    board: BulletinClient,
    owner: Arc<Identity>,
    mut bans: tokio::sync::mpsc::Receiver<tormr_core::identity::PublicKey>,
    stop: CancellationToken,
) {
    // No job id: the board need not learn which of the owner's jobs it was.
    let reason = "an answer disagreed with the verified one";
    loop {
        let worker = tokio::select! {
            w = bans.recv() => w,
            _ = stop.cancelled() => bans.try_recv().ok(),
        };
        let Some(worker) = worker else { return };
        match tormr_net::client::with_retries(5, || board.ban(&owner, &worker, reason)).await {
            Ok(()) => tracing::info!("reported the ban of {} to the bulletin", worker.short()),
            Err(e) => tracing::warn!(
                "could not report the ban of {} to the bulletin ({e}); it stays banned in your trust book",
                worker.short()
            ),
        }
    }
}

/// Limits of a service every worker of the job holds a connection to.
pub fn worker_facing() -> ServerConfig {
    ServerConfig {
        max_connections: tormr_jobmaster::service::WORKER_CONNECTIONS,
        ..ServerConfig::default()
    }
}

/// How long matched workers have to join before the job gives up on them.
const JOIN_GRACE: Duration = Duration::from_secs(120);

/// The job master's worker API, once published.
type WorkerApiSlot = Arc<tokio::sync::Mutex<Option<Server>>>;

/// Follows the request until matched, failing the job if it expires or if no
/// matched worker shows up; publishes the job master's reserved onion service
/// for exactly the matched workers; returns how long matching took.
async fn watch_match(
    jm: Arc<JobMaster>,
    board: BulletinClient,
    request: tormr_core::ids::RequestId,
    wanted: u32,
    started: Instant,
    mut restricted: Option<(Arc<dyn Transport>, ServiceSpec)>,
    worker_api: WorkerApiSlot,
) -> Option<Duration> {
    let mut seen = 0;
    let matched = loop {
        match board.watch(&request, seen, Duration::from_secs(25)).await {
            Ok(RequestState::Matched { workers }) => {
                tracing::info!("{} of {wanted} worker(s) matched", workers.len());
                jm.note_matched(started.elapsed());
                if let Some((transport, spec)) = restricted.take() {
                    let keys: Vec<String> = workers
                        .iter()
                        .filter_map(|w| w.discovery_key.clone())
                        .collect();
                    let spec = spec.restricted_to(keys);
                    match transport.publish(&spec).await {
                        Ok(listener) => {
                            let server = Server::spawn(
                                listener,
                                Arc::new(WorkerApi(jm.clone())),
                                worker_facing(),
                            );
                            *worker_api.lock().await = Some(server);
                        }
                        Err(e) => {
                            jm.abort(&format!(
                                "could not publish the job master's onion service: {e}"
                            ));
                            return None;
                        }
                    }
                }
                break started.elapsed();
            }
            Ok(RequestState::Gathering { have, .. }) => {
                if have != seen {
                    eprintln!("{have} of {wanted} worker(s) gathered");
                }
                seen = have;
            }
            Ok(RequestState::Expired { .. }) if jm.has_live_workers() => {
                // A resumed job whose workers came back needs no more.
                return None;
            }
            Ok(RequestState::Expired { have }) => {
                jm.abort(&format!(
                    "the cluster request expired with {have} of the {wanted} worker(s) it needs; try again later, or ask for fewer workers"
                ));
                return None;
            }
            Ok(RequestState::Withdrawn) => return None,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => {
                jm.abort(&format!(
                    "the bulletin stopped answering about the cluster request: {e}"
                ));
                return None;
            }
        }
    };
    tokio::time::sleep(JOIN_GRACE).await;
    if jm.status().workers.is_empty() {
        jm.abort(&format!(
            "none of the matched workers joined within {} s; try again",
            JOIN_GRACE.as_secs()
        ));
    }
    Some(matched)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The error to show when a job failed.
pub fn failure_message(s: &Summary) -> anyhow::Error {
    match &s.error {
        Some(f) => {
            let mut msg = format!("job {} failed: task {}: {}", s.job, f.task, f.reason);
            if !f.stderr_tail.trim().is_empty() {
                msg.push_str("\n--- last lines the task wrote on stderr ---\n");
                msg.push_str(f.stderr_tail.trim_end());
            }
            anyhow!(msg)
        }
        None => anyhow!("job {} failed", s.job),
    }
}
