//! The job master's worker API over loopback HTTP, with a real data layer:
//! tickets, proofs, the bucket cap, body limits, what the data layer sees,
//! and the data layer's receipts for stored outputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tormr_core::identity::{Identity, Signed};
use tormr_core::ids::{JobId, RequestId, TicketId};
use tormr_core::partition::KeySpec;
use tormr_core::spec::{JobLimits, JobSpec, StepSpec};
use tormr_core::store::memory::MemoryStore;
use tormr_core::token::TokenSecret;
use tormr_core::wire::bulletin::JoinTicket;
use tormr_core::wire::job::{Join, JoinProof, Lease, LeaseAnswer};
use tormr_datalayer::client::no_progress;
use tormr_datalayer::{DataClient, DataLayer, DataLayerConfig, DirStore};
use tormr_jobmaster::clock::SystemClock;
use tormr_jobmaster::input::{UploadPlan, list_inputs, plan_slices, upload_inputs};
use tormr_jobmaster::records::ClusterRecord;
use tormr_jobmaster::scheduler::SchedulerConfig;
use tormr_jobmaster::service::WorkerApi;
use tormr_jobmaster::{JobMaster, JobMasterConfig};
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{HttpClient, Server, ServerConfig, Transport};

struct Fixture {
    dir: tempfile::TempDir,
    transport: Arc<dyn Transport>,
    jm: Arc<JobMaster>,
    job_key: Arc<Identity>,
    board: Identity,
    request: RequestId,
    api: Server,
    _data: Server,
    data: DataClient,
}

fn spec(cap: Option<u32>) -> JobSpec {
    JobSpec {
        name: "t".into(),
        steps: vec![StepSpec {
            mapper: Some("cat".into()),
            combiner: None,
            reducer: None,
            reduces: 1,
            keys: KeySpec::default(),
            conf: BTreeMap::new(),
        }],
        files: vec![],
        env: BTreeMap::new(),
        conf: BTreeMap::new(),
        limits: JobLimits {
            max_buckets_per_worker: cap,
            bucket_bytes: 1024,
            ..JobLimits::default()
        },
        image: None,
        pachyderm: None,
    }
}

async fn fixture(cap: Option<u32>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
    let secret = TokenSecret::random();
    let store = Arc::new(DirStore::open(&dir.path().join("d")).unwrap());
    let d = Server::spawn(
        transport.publish(&ServiceSpec::new("d")).await.unwrap(),
        Arc::new(DataLayer::new(
            store,
            secret.clone(),
            DataLayerConfig::default(),
        )),
        ServerConfig::default(),
    );
    let job = JobId::random();
    let data = DataClient::new(
        vec![HttpClient::new(transport.clone(), d.address().clone())],
        job.clone(),
    );
    let job_key = Arc::new(Identity::generate());
    let jm = JobMaster::create(JobMasterConfig {
        job,
        spec: spec(cap),
        identity: job_key.clone(),
        datalayer: d.address().clone(),
        secret,
        store: Arc::new(MemoryStore::new()),
        files: BTreeMap::new(),
        image: None,
        endorsement: None,
        scheduler: SchedulerConfig::default(),
        heartbeat_secs: 10,
        data: data.clone(),
        clock: Arc::new(SystemClock),
        trust: tormr_jobmaster::trust::TrustBook::new(Arc::new(MemoryStore::new())),
        trusted_workers: Default::default(),
        bans: None,
    })
    .await
    .unwrap();
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
        ServerConfig::default(),
    );
    Fixture {
        dir,
        transport,
        jm,
        job_key,
        board,
        request,
        api,
        _data: d,
        data,
    }
}

impl Fixture {
    fn ticket(&self, worker: &Identity) -> Signed<JoinTicket> {
        let now = tormr_core::unix_now();
        Signed::sign(
            &self.board,
            &JoinTicket {
                ticket: TicketId::random(),
                request: self.request.clone(),
                job_key: self.job_key.public(),
                job_address: self.api.address().to_string(),
                worker: worker.public(),
                issued_at: now,
                expires_at: now + 600,
            },
        )
    }

    fn join(&self, ticket: Signed<JoinTicket>, prover: &Identity) -> Join {
        let t = ticket.open().unwrap();
        let proof = JoinProof {
            ticket: t.ticket,
            job_key: t.job_key,
            issued_at: tormr_core::unix_now(),
        };
        Join {
            ticket,
            proof: Signed::sign(prover, &proof),
        }
    }

    fn client(&self) -> HttpClient {
        HttpClient::new(self.transport.clone(), self.api.address().clone())
    }

    async fn upload(&self, text: &str) -> u32 {
        let path = self.dir.path().join("input.txt");
        std::fs::write(&path, text).unwrap();
        let files = Arc::new(list_inputs(&[path]).unwrap());
        let slices = plan_slices(&files, self.jm.spec().limits.bucket_bytes).unwrap();
        let staging = self.dir.path().join("staging");
        std::fs::create_dir_all(&staging).unwrap();
        let n = upload_inputs(
            &self.jm,
            &self.data,
            files,
            slices,
            UploadPlan::default(),
            &staging,
            2,
            no_progress(),
        )
        .await
        .unwrap();
        self.jm.close_input(n).await.unwrap();
        n
    }
}

#[tokio::test]
async fn a_valid_ticket_joins_once() {
    let f = fixture(None).await;
    let me = Identity::generate();
    let ticket = f.ticket(&me);
    let joined = f.client().call(&f.join(ticket.clone(), &me)).await.unwrap();
    assert_eq!(&joined.job, f.jm.job());
    // The same ticket again (a replay, even by its owner) is refused.
    let err = f.client().call(&f.join(ticket, &me)).await.unwrap_err();
    assert_eq!(err.code(), Some("ticket_used"), "{err}");
}

#[tokio::test]
async fn forged_and_misdirected_tickets_are_refused() {
    let f = fixture(None).await;
    let me = Identity::generate();
    // Signed by someone who is not the board.
    let mut forged = f.ticket(&me);
    let fake_board = Identity::generate();
    let payload: JoinTicket = forged.open().unwrap();
    forged = Signed::sign(&fake_board, &payload);
    let err = f.client().call(&f.join(forged, &me)).await.unwrap_err();
    assert_eq!(err.code(), Some("forbidden"), "{err}");
    // A real ticket presented by a thief who lacks the worker's key.
    let thief = Identity::generate();
    let err = f
        .client()
        .call(&f.join(f.ticket(&me), &thief))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("forbidden"), "{err}");
    // A ticket for another job's key.
    let mut other = f.ticket(&me).open().unwrap();
    other.job_key = Identity::generate().public();
    let err = f
        .client()
        .call(&f.join(Signed::sign(&f.board, &other), &me))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("another job"), "{err}");
    // An expired ticket.
    let mut old = f.ticket(&me).open().unwrap();
    old.expires_at = 10;
    let err = f
        .client()
        .call(&f.join(Signed::sign(&f.board, &old), &me))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    // Every call without a session is refused.
    let err = f
        .client()
        .with_bearer("made-up")
        .call(&Lease {
            wait_secs: 0,
            running: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("session_unknown"));
}

#[tokio::test]
async fn a_worker_at_its_bucket_cap_is_refused_more_input() {
    let f = fixture(Some(2)).await;
    let lines: String = (0..400).map(|i| format!("line {i}\n")).collect();
    assert!(f.upload(&lines).await > 2, "need more buckets than the cap");
    let me = Identity::generate();
    let joined = f.client().call(&f.join(f.ticket(&me), &me)).await.unwrap();
    let worker = f.client().with_bearer(&joined.session);
    let mut held = Vec::new();
    for _ in 0..2 {
        match worker
            .call(&Lease {
                wait_secs: 0,
                running: held.clone(),
            })
            .await
            .unwrap()
        {
            LeaseAnswer::Task { task } => held.push(task.attempt),
            other => panic!("expected a task, got {other:?}"),
        }
    }
    let err = worker
        .call(&Lease {
            wait_secs: 0,
            running: held,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("bucket_cap_reached"), "{err}");
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let f = fixture(None).await;
    let http = f.client();
    let big = vec![b'x'; 8 << 20];
    let req = http
        .request(http::Method::POST, "/v1/join")
        .body(tormr_net::body::full(big))
        .unwrap();
    let err = http.send(req, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.code(), Some("too_large"), "{err}");
    let req = http
        .request(http::Method::POST, "/v1/join")
        .body(tormr_net::body::full("{\"ticket\": 5}"))
        .unwrap();
    let err = http.send(req, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.code(), Some("bad_request"), "{err}");
    // The service is still up.
    let me = Identity::generate();
    assert!(http.call(&f.join(f.ticket(&me), &me)).await.is_ok());
}

#[tokio::test]
async fn the_data_layer_never_holds_plaintext() {
    let f = fixture(None).await;
    let marker = "zanzibar-plaintext-marker";
    let text: String = (0..2000)
        .map(|i| format!("{marker} {i} some words to fill the bucket\n"))
        .collect();
    let buckets = f.upload(&text).await;
    assert!(buckets > 10);
    let mut files = 0;
    for entry in walk(&f.dir.path().join("d")) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "plaintext found in {}",
            entry.display()
        );
        assert!(
            !bytes.windows(11).any(|w| w == b"some words "),
            "plaintext found in {}",
            entry.display()
        );
    }
    assert!(
        files >= buckets as usize,
        "expected the sealed buckets on disk"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Reports a map attempt done with `bytes` sealed bytes per output and the
/// given receipt; returns J's data-layer requests made while taking it.
async fn report_done(
    f: &Fixture,
    worker: &HttpClient,
    task: &tormr_core::wire::job::TaskAssignment,
    bytes: u64,
    receipt: Option<String>,
) -> u64 {
    use tormr_core::encoding::Digest;
    use tormr_core::seal::SealSummary;
    use tormr_core::wire::job::{Outcome, Report, WrittenBucket};
    let outputs = task
        .outputs
        .iter()
        .map(|o| WrittenBucket {
            partition: o.partition,
            bucket: o.bucket.clone(),
            summary: SealSummary {
                plain_bytes: 1,
                plain_digest: Some(Digest::default()),
                sealed_bytes: bytes,
            },
            records: 1,
            canonical_digest: None,
            receipt: receipt.clone(),
        })
        .collect();
    let (asked_before, _) = f.data.traffic();
    let answer = worker
        .call(&Report {
            attempt: task.attempt,
            outcome: Outcome::Succeeded { outputs },
            counters: Default::default(),
            elapsed_ms: 1,
            next: None,
        })
        .await
        .unwrap();
    assert!(answer.accepted, "{}", answer.note);
    f.data.traffic().0 - asked_before
}

#[tokio::test]
async fn a_report_is_taken_on_the_data_layers_receipt_and_a_forged_one_proves_nothing() {
    let f = fixture(None).await;
    let lines: String = (0..600).map(|i| format!("line {i}\n")).collect();
    assert!(f.upload(&lines).await >= 4, "need four tasks");
    let me = Identity::generate();
    let joined = f.client().call(&f.join(f.ticket(&me), &me)).await.unwrap();
    let worker = f.client().with_bearer(&joined.session);
    let worker_data = DataClient::new(
        vec![HttpClient::new(
            f.transport.clone(),
            f._data.address().clone(),
        )],
        f.jm.job().clone(),
    );
    let lease = async || match worker
        .call(&Lease {
            wait_secs: 0,
            running: vec![],
        })
        .await
        .unwrap()
    {
        LeaseAnswer::Task { task } => *task,
        other => panic!("expected a task, got {other:?}"),
    };
    let blob = f.dir.path().join("blob");
    std::fs::write(&blob, b"sealed").unwrap();

    // Nothing stored, a receipt minted with another secret: J asks the data
    // layer, which holds nothing, and the attempt fails.
    let task = lease().await;
    let out = &task.outputs[0];
    let forged = TokenSecret::random().receipt(f.jm.job(), &out.bucket, 6);
    assert_eq!(report_done(&f, &worker, &task, 6, Some(forged)).await, 1);
    assert_eq!(f.jm.attempt_tally().failed, 1);

    // Stored, with the data layer's receipt: J takes it without asking.
    let task = lease().await;
    let out = &task.outputs[0];
    let stored = worker_data
        .put_file(&out.bucket, &out.token, &blob, no_progress())
        .await
        .unwrap();
    let receipt = stored.receipt.expect("the data layer hands out a receipt");
    // A good receipt for another size is no proof of this report's claim.
    assert_eq!(
        report_done(&f, &worker, &task, 7, Some(receipt.clone())).await,
        1
    );
    assert_eq!(f.jm.attempt_tally().failed, 2, "7 bytes are not stored");
    let task = lease().await;
    let out = &task.outputs[0];
    let stored = worker_data
        .put_file(&out.bucket, &out.token, &blob, no_progress())
        .await
        .unwrap();
    assert_eq!(report_done(&f, &worker, &task, 6, stored.receipt).await, 0);

    // Stored, no receipt (an older worker): J asks, and takes it.
    let task = lease().await;
    let out = &task.outputs[0];
    worker_data
        .put_file(&out.bucket, &out.token, &blob, no_progress())
        .await
        .unwrap();
    assert_eq!(report_done(&f, &worker, &task, 6, None).await, 1);
    assert_eq!(f.jm.attempt_tally().failed, 2);
}

#[tokio::test]
async fn a_report_leases_the_next_task_in_the_same_round_trip() {
    use tormr_core::wire::job::{Outcome, Report};
    let f = fixture(None).await;
    let lines: String = (0..600).map(|i| format!("line {i}\n")).collect();
    let buckets = f.upload(&lines).await;
    assert!(buckets >= 3, "need three tasks");
    let me = Identity::generate();
    let joined = f.client().call(&f.join(f.ticket(&me), &me)).await.unwrap();
    let worker = f.client().with_bearer(&joined.session);
    let first = match worker
        .call(&Lease {
            wait_secs: 0,
            running: vec![],
        })
        .await
        .unwrap()
    {
        LeaseAnswer::Task { task } => *task,
        other => panic!("expected a task, got {other:?}"),
    };
    // A failed attempt is reported too; its report leases the next task.
    let failed = |attempt, next| Report {
        attempt,
        outcome: Outcome::Failed {
            reason: "test".into(),
            exit_code: Some(1),
            stderr_tail: String::new(),
        },
        counters: Default::default(),
        elapsed_ms: 1,
        next,
    };
    let answer = worker
        .call(&failed(
            first.attempt,
            Some(Lease {
                wait_secs: 0,
                running: vec![],
            }),
        ))
        .await
        .unwrap();
    assert!(answer.accepted, "{}", answer.note);
    let second = match answer.next {
        Some(LeaseAnswer::Task { task }) => *task,
        other => panic!("expected the next task in the answer, got {other:?}"),
    };
    assert_ne!(second.attempt, first.attempt);
    assert_eq!(f.jm.attempt_tally().launched, 2);
    // Without a lease in it, a report leases nothing.
    let answer = worker.call(&failed(second.attempt, None)).await.unwrap();
    assert!(answer.accepted, "{}", answer.note);
    assert!(answer.next.is_none());
    assert_eq!(f.jm.attempt_tally().launched, 2);
}
