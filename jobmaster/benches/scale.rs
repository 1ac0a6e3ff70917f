//! One job master against 1,000 simulated workers over loopback HTTP, with a
//! real data layer: each worker joins with a ticket, leases, stores a tiny
//! output bucket, reports, and leases again until the job is done. Reports
//! assignments per second, p50/p99 assignment latency and the process's
//! memory, with and without the protocol's round-trip savings (the data
//! layer's receipts, the next task leased in the report); then the cost of
//! verification with every worker at trust 0, 0.5 and 0.9 (extra attempts as
//! a share of the job's, and wall time).
//!
//! `cargo bench --profile dev -p tormr-jobmaster --bench scale`
//! (`TORMR_BENCH_WORKERS`, `TORMR_BENCH_TASKS` override 1000 and 20000;
//! `TORMR_BENCH_ONLY=LABEL` runs only the row so labelled, for profiling).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tormr_core::counters::Counters;
use tormr_core::encoding::Digest;
use tormr_core::identity::{Identity, Signed};
use tormr_core::ids::{BucketId, JobId, RequestId, TicketId};
use tormr_core::partition::KeySpec;
use tormr_core::seal::{BucketKey, SealSummary};
use tormr_core::spec::{JobLimits, JobSpec, StepSpec};
use tormr_core::store::memory::MemoryStore;
use tormr_core::token::TokenSecret;
use tormr_core::wire::bulletin::JoinTicket;
use tormr_core::wire::job::{
    Join, JoinProof, Joined, Lease, LeaseAnswer, Outcome, Report, TaskAssignment, WrittenBucket,
};
use tormr_datalayer::client::no_progress;
use tormr_datalayer::{DataClient, DataLayer, DataLayerConfig, DirStore};
use tormr_jobmaster::clock::SystemClock;
use tormr_jobmaster::records::{BucketRef, ClusterRecord};
use tormr_jobmaster::scheduler::SchedulerConfig;
use tormr_jobmaster::service::WorkerApi;
use tormr_jobmaster::trust::TrustBook;
use tormr_jobmaster::{JobMaster, JobMasterConfig};
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{HttpClient, Server, ServerConfig, Transport};

const OUTPUT_BYTES: usize = 64;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spec() -> JobSpec {
    JobSpec {
        name: "scale".into(),
        steps: vec![StepSpec {
            mapper: Some("cat".into()),
            combiner: None,
            reducer: None,
            reduces: 0,
            keys: KeySpec::default(),
            conf: BTreeMap::new(),
        }],
        files: vec![],
        env: BTreeMap::new(),
        conf: BTreeMap::new(),
        limits: JobLimits::default(),
        image: None,
        pachyderm: None,
    }
}

/// Input bucket `i` of a simulated job (never read: tasks are trivial).
fn input_bucket(i: usize) -> BucketRef {
    BucketRef {
        bucket: BucketId::input(i as u32),
        key: BucketKey::random(),
        sealed_bytes: 1,
        plain_bytes: 1,
        plain_digest: None,
        canonical_digest: None,
        records: 1,
        source: None,
    }
}

/// As `tormr submit` serves a job: every worker holds a connection.
fn many_peers() -> ServerConfig {
    ServerConfig {
        max_connections: tormr_jobmaster::service::WORKER_CONNECTIONS,
        ..ServerConfig::default()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One run's figures.
struct Run {
    tasks: usize,
    wall: Duration,
    assignments: usize,
    latencies: Vec<Duration>,
    launched: u32,
    copies: u32,
    rss_peak_kib: u64,
    rss_before_kib: u64,
}

/// What each simulated worker tells the bench.
struct WorkerTally {
    latencies: Vec<Duration>,
}

struct Setup {
    jm: Arc<JobMaster>,
    api: Server,
    _data: Server,
    transport: Arc<dyn Transport>,
    board: Identity,
    request: RequestId,
    blob: std::path::PathBuf,
    data_address: tormr_net::Address,
    secret: TokenSecret,
}

/// A job master with `tasks` map tasks over a real data layer; the workers'
/// pseudonyms start at `trust` (1.0: the owner's own, never checked).
async fn setup(dir: &Path, tasks: usize, workers: &[Identity], trust: f64) -> Setup {
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
    let secret = TokenSecret::random();
    let store = Arc::new(DirStore::open(&dir.join("data")).unwrap());
    let data_server = Server::spawn(
        transport.publish(&ServiceSpec::new("d")).await.unwrap(),
        Arc::new(DataLayer::new(
            store,
            secret.clone(),
            DataLayerConfig::default(),
        )),
        many_peers(),
    );
    let job = JobId::random();
    let data = DataClient::new(
        vec![HttpClient::new(
            transport.clone(),
            data_server.address().clone(),
        )],
        job.clone(),
    );
    let spec = spec();
    let trust_book = TrustBook::new(Arc::new(MemoryStore::new()));
    let streak = (trust * f64::from(spec.limits.verify.trust_after)).round() as u32;
    if trust < 1.0 {
        for w in workers {
            for _ in 0..streak {
                trust_book.agreed(&w.public()).await.unwrap();
            }
        }
    }
    let trusted: BTreeSet<_> = if trust >= 1.0 {
        workers.iter().map(Identity::public).collect()
    } else {
        BTreeSet::new()
    };
    let jm = JobMaster::create(JobMasterConfig {
        job,
        spec,
        identity: Arc::new(Identity::generate()),
        datalayer: data_server.address().clone(),
        secret: secret.clone(),
        store: Arc::new(MemoryStore::new()),
        files: BTreeMap::new(),
        image: None,
        endorsement: None,
        scheduler: SchedulerConfig::default(),
        heartbeat_secs: 10,
        data,
        clock: Arc::new(SystemClock),
        trust: trust_book,
        trusted_workers: trusted,
        bans: None,
    })
    .await
    .unwrap();
    for i in 0..tasks {
        jm.add_input(input_bucket(i)).await.unwrap();
    }
    jm.close_input(tasks as u32).await.unwrap();
    let board = Identity::generate();
    let request = RequestId::random();
    jm.set_cluster(ClusterRecord {
        board: board.public(),
        request: request.clone(),
        earlier: Vec::new(),
    })
    .await
    .unwrap();
    let api = Server::spawn(
        transport.publish(&ServiceSpec::new("j")).await.unwrap(),
        Arc::new(WorkerApi(jm.clone())),
        many_peers(),
    );
    let blob = dir.join("blob");
    std::fs::write(&blob, [7u8; OUTPUT_BYTES]).unwrap();
    Setup {
        jm,
        api,
        data_address: data_server.address().clone(),
        _data: data_server,
        transport,
        board,
        request,
        blob,
        secret,
    }
}

fn join_message(s: &Setup, worker: &Identity) -> Join {
    let now = tormr_core::unix_now();
    let ticket = JoinTicket {
        ticket: TicketId::random(),
        request: s.request.clone(),
        job_key: s.jm.public_key(),
        job_address: s.api.address().to_string(),
        worker: worker.public(),
        issued_at: now,
        expires_at: now + 600,
    };
    let proof = JoinProof {
        ticket: ticket.ticket.clone(),
        job_key: ticket.job_key,
        issued_at: now,
    };
    Join {
        ticket: Signed::sign(&s.board, &ticket),
        proof: Signed::sign(worker, &proof),
    }
}

/// Which of the protocol's round-trip savings the simulated workers use.
#[derive(Clone, Copy)]
struct Shortcuts {
    /// Pass the data layer's receipts on (else J asks the data layer).
    receipts: bool,
    /// Lease the next task in each report.
    next_in_report: bool,
    /// Store outputs on the data layer; else the simulation mints their
    /// receipts itself, leaving J's own cost alone on the machine.
    store: bool,
}

impl Shortcuts {
    const ALL: Shortcuts = Shortcuts {
        receipts: true,
        next_in_report: true,
        store: true,
    };
    const NONE: Shortcuts = Shortcuts {
        receipts: false,
        next_in_report: false,
        store: true,
    };

    fn label(self) -> &'static str {
        match (self.store, self.receipts, self.next_in_report) {
            (false, _, _) => ", J alone (outputs not stored: receipts minted by the simulation)",
            (true, true, true) => "",
            (true, false, false) => ", no shortcuts (lease, PUT, report, J's HEAD)",
            (true, true, false) => ", receipts only",
            (true, false, true) => ", next task in report only",
        }
    }
}

/// Stores each output bucket and says what was written: every copy of a
/// task gives the same answer, so checks agree.
async fn write_outputs(
    data: &DataClient,
    blob: &Path,
    task: &TaskAssignment,
    shortcuts: Shortcuts,
    secret: &TokenSecret,
) -> Vec<WrittenBucket> {
    let mut written = Vec::new();
    for out in &task.outputs {
        let receipt = if shortcuts.store {
            data.put_file(&out.bucket, &out.token, blob, no_progress())
                .await
                .unwrap()
                .receipt
        } else {
            Some(secret.receipt(data.job(), &out.bucket, OUTPUT_BYTES as u64))
        };
        let answer = Digest::of(task.attempt.task.to_string().as_bytes());
        written.push(WrittenBucket {
            partition: out.partition,
            bucket: out.bucket.clone(),
            summary: SealSummary {
                plain_bytes: 1,
                plain_digest: Some(answer),
                sealed_bytes: OUTPUT_BYTES as u64,
            },
            records: 1,
            canonical_digest: Some(answer),
            receipt: receipt.filter(|_| shortcuts.receipts),
        });
    }
    written
}

async fn simulated_worker(
    jm: HttpClient,
    data: DataClient,
    join: Join,
    blob: std::path::PathBuf,
    shortcuts: Shortcuts,
    secret: TokenSecret,
) -> WorkerTally {
    let joined: Joined = jm.call(&join).await.unwrap();
    let jm = jm.with_bearer(&joined.session);
    let mut latencies = Vec::new();
    let mut leased: Option<TaskAssignment> = None;
    loop {
        let answer = match leased.take() {
            Some(task) => Ok(LeaseAnswer::Task {
                task: Box::new(task),
            }),
            None => {
                let asked = Instant::now();
                let answer = jm
                    .call(&Lease {
                        wait_secs: 5,
                        running: vec![],
                    })
                    .await;
                if matches!(answer, Ok(LeaseAnswer::Task { .. })) {
                    latencies.push(asked.elapsed());
                }
                answer
            }
        };
        match answer {
            Ok(LeaseAnswer::Task { task }) => {
                let outputs = write_outputs(&data, &blob, &task, shortcuts, &secret).await;
                let report = Report {
                    attempt: task.attempt,
                    outcome: Outcome::Succeeded { outputs },
                    counters: Counters::default(),
                    elapsed_ms: 1,
                    next: shortcuts.next_in_report.then(|| Lease {
                        wait_secs: 0,
                        running: vec![],
                    }),
                };
                let asked = Instant::now();
                let answer = jm.call(&report).await.unwrap();
                if let Some(LeaseAnswer::Task { task }) = answer.next {
                    latencies.push(asked.elapsed());
                    leased = Some(*task);
                }
            }
            Ok(LeaseAnswer::Wait) => {}
            Ok(LeaseAnswer::Done) => return WorkerTally { latencies },
            // Only input left and this worker holds its share, or busy.
            Err(e) if e.is_retryable() || e.code().is_some() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("lease failed: {e}"),
        }
    }
}

async fn run(tasks: usize, workers: usize, trust: f64, shortcuts: Shortcuts) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let identities: Vec<Identity> = (0..workers).map(|_| Identity::generate()).collect();
    let rss_before_kib = rss_kib();
    let s = setup(dir.path(), tasks, &identities, trust).await;
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_kib()));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for w in &identities {
        let jm = HttpClient::new(s.transport.clone(), s.api.address().clone());
        let data = DataClient::new(
            vec![HttpClient::new(s.transport.clone(), s.data_address.clone())],
            s.jm.job().clone(),
        );
        running.spawn(simulated_worker(
            jm,
            data,
            join_message(&s, w),
            s.blob.clone(),
            shortcuts,
            s.secret.clone(),
        ));
    }
    let mut latencies = Vec::new();
    while let Some(done) = running.join_next().await {
        latencies.extend(done.unwrap().latencies);
    }
    let wall = started.elapsed();
    sampler.abort();
    let tally = s.jm.attempt_tally();
    assert_eq!(
        s.jm.state(),
        tormr_core::wire::job::JobState::Succeeded,
        "the simulated job did not succeed"
    );
    latencies.sort();
    Run {
        tasks,
        wall,
        assignments: latencies.len(),
        latencies,
        launched: tally.launched,
        copies: tally.verification_copies,
        rss_peak_kib: peak.load(std::sync::atomic::Ordering::Relaxed),
        rss_before_kib,
    }
}

/// The scheduler alone, no HTTP, no data layer: how many assignments the
/// job master's bookkeeping allows (`workers` take turns lease → report).
fn scheduler_alone(tasks: usize, workers: usize) -> (Duration, u32) {
    use tormr_jobmaster::scheduler::{Assignment, Scheduler, Standing};
    let mut s = Scheduler::new(&spec(), SchedulerConfig::default());
    for w in 0..workers as u32 {
        s.join_as(
            w,
            0,
            Standing {
                trust: 1.0,
                trusted: true,
            },
        );
    }
    for i in 0..tasks {
        s.add_input(input_bucket(i));
    }
    s.close_input();
    let started = Instant::now();
    let mut now = 1;
    while *s.state() == tormr_core::wire::job::JobState::Running {
        now += 1;
        for w in 0..workers as u32 {
            let Assignment::Task(l) = s.assign(w, now) else {
                continue;
            };
            let answer = Digest::of(l.attempt.task.to_string().as_bytes());
            let written: Vec<WrittenBucket> = l
                .outputs
                .iter()
                .map(|o| WrittenBucket {
                    partition: o.partition,
                    bucket: o.bucket.clone(),
                    summary: SealSummary {
                        plain_bytes: 1,
                        plain_digest: Some(answer),
                        sealed_bytes: OUTPUT_BYTES as u64,
                    },
                    records: 1,
                    canonical_digest: Some(answer),
                    receipt: None,
                })
                .collect();
            let _ = s.succeed(w, &l.attempt, &written, &Counters::default(), 1);
        }
    }
    (started.elapsed(), s.tally().launched)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let workers = env_or("TORMR_BENCH_WORKERS", 1000);
    let tasks = env_or("TORMR_BENCH_TASKS", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{workers} simulated workers over loopback HTTP, map-only tasks with one {OUTPUT_BYTES}-byte output each"
    );
    println!();
    println!(
        "| workers' trust | tasks | attempts | verification copies | extra attempts | wall (s) | assignments/s | p50 assign (ms) | p99 assign (ms) | RSS before → peak (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let (took, launched) = scheduler_alone(tasks, workers);
    println!(
        "| scheduler alone (no HTTP, no data layer) | {tasks} | {launched} | 0 | 0.0% | {:.2} | {:.0} | - | - | - |",
        took.as_secs_f64(),
        f64::from(launched) / took.as_secs_f64()
    );
    let runs = [
        (
            1.0,
            Shortcuts {
                store: false,
                ..Shortcuts::ALL
            },
        ),
        (1.0, Shortcuts::NONE),
        (1.0, Shortcuts::ALL),
        (
            1.0,
            Shortcuts {
                next_in_report: false,
                ..Shortcuts::ALL
            },
        ),
        (0.9, Shortcuts::ALL),
        (0.5, Shortcuts::ALL),
        (0.0, Shortcuts::ALL),
    ];
    let only = std::env::var("TORMR_BENCH_ONLY").ok();
    for (trust, shortcuts) in runs {
        let label = if trust >= 1.0 {
            format!("owner's own (never checked){}", shortcuts.label())
        } else {
            format!("{trust}{}", shortcuts.label())
        };
        if only.as_ref().is_some_and(|o| label != *o) {
            continue;
        }
        let r = rt.block_on(run(tasks, workers, trust, shortcuts));
        println!(
            "| {label} | {} | {} | {} | {:.1}% | {:.2} | {:.0} | {:.1} | {:.1} | {:.0} → {:.0} |",
            r.tasks,
            r.launched,
            r.copies,
            100.0 * f64::from(r.copies) / f64::from(r.launched - r.copies).max(1.0),
            r.wall.as_secs_f64(),
            r.assignments as f64 / r.wall.as_secs_f64(),
            percentile(&r.latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&r.latencies, 0.99).as_secs_f64() * 1000.0,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_peak_kib as f64 / 1024.0,
        );
    }
}
