//! How fast a board takes volunteers and matches them: 10,000 registrations
//! (pre-signed, sent 64 at a time over loopback HTTP) into 100 waiting
//! requests of 100 workers each, on redb and — when Debian's `etcd` is
//! installed — on a real etcd server, one and two replicas. Prints a
//! Markdown table; `cargo bench -p tormr-bulletin --bench board`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tormr_bulletin::service::shared_identity;
use tormr_bulletin::{BoardConfig, Bulletin, BulletinClient};
use tormr_core::identity::{Identity, Signed};
use tormr_core::store::Store;
use tormr_core::store::redb::RedbStore;
use tormr_core::wire::bulletin::{
    Capabilities, ClusterRequest, ExecutorKind, Register, Registration, RequestState, Requirements,
};
use tormr_etcd::EtcdStore;
use tormr_etcd::testing::EtcdServer;
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{HttpClient, Server, ServerConfig, Transport};

const VOLUNTEERS: usize = 10_000;
const REQUESTS: usize = 100;
const PER_REQUEST: u32 = 100;
const IN_FLIGHT: usize = 64;

struct Row {
    store: String,
    registrations_s: f64,
    matched_s: f64,
    /// Registrations answered "busy" and sent again.
    retries: u32,
}

async fn serve(store: Arc<dyn Store>, identity: Identity, cancel: &CancellationToken) -> Server {
    let board = Bulletin::open(store, identity, BoardConfig::default())
        .await
        .unwrap();
    board.spawn_ticker(cancel.clone());
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
    Server::spawn(
        transport.publish(&ServiceSpec::new("b")).await.unwrap(),
        board,
        ServerConfig::default(),
    )
}

fn registration(id: &Identity) -> Register {
    let reg = Registration {
        capabilities: Capabilities {
            cores: 1,
            memory_mb: 1024,
            executors: vec![ExecutorKind::Process],
        },
        trusted_by: None,
        discovery_key: None,
        issued_at: tormr_core::unix_now(),
    };
    Register(Signed::sign(id, &reg))
}

/// Runs the workload against replicas serving one store.
async fn run(name: &str, stores: Vec<Arc<dyn Store>>) -> Row {
    let cancel = CancellationToken::new();
    let identity = shared_identity(stores[0].as_ref(), Identity::generate())
        .await
        .unwrap();
    let mut servers = Vec::new();
    for store in &stores {
        let id = Identity::from_secret_bytes(identity.secret_bytes());
        servers.push(serve(store.clone(), id, &cancel).await);
    }
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
    let clients: Vec<BulletinClient> = servers
        .iter()
        .map(|s| BulletinClient::new(HttpClient::new(transport.clone(), s.address().clone())))
        .collect();

    let mut posted = Vec::new();
    for i in 0..REQUESTS {
        let job = Identity::generate();
        let request = ClusterRequest {
            job_address: format!("127.0.0.1:{}", 10_000 + i),
            workers: PER_REQUEST,
            min_workers: PER_REQUEST,
            wait_secs: 3_600,
            requirements: Requirements::default(),
            issued_at: tormr_core::unix_now(),
            owner: None,
        };
        let client = &clients[i % clients.len()];
        posted.push(client.post_request(&job, &request).await.unwrap().request);
    }
    let volunteers: Vec<Register> = (0..VOLUNTEERS)
        .map(|_| registration(&Identity::generate()))
        .collect();

    let started = Instant::now();
    let retries = {
        let http: Vec<HttpClient> = clients.iter().map(|c| c.http().clone()).collect();
        stream::iter(volunteers.into_iter().enumerate())
            .map(|(i, msg)| {
                let http = http[i % http.len()].clone();
                async move {
                    // A busy board (replicas racing) is retried, as volunteers do.
                    let mut retries = 0u32;
                    loop {
                        match http.call(&msg).await {
                            Ok(_) => return retries,
                            Err(e) if e.is_retryable() && retries < 100 => retries += 1,
                            Err(e) => panic!("registration failed: {e}"),
                        }
                    }
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<u32>>()
            .await
            .into_iter()
            .sum::<u32>()
    };
    let registrations_s = started.elapsed().as_secs_f64();
    for id in &posted {
        loop {
            match clients[0]
                .watch(id, 0, Duration::from_secs(5))
                .await
                .unwrap()
            {
                RequestState::Matched { .. } => break,
                RequestState::Gathering { .. } => continue,
                other => panic!("request ended {other:?}"),
            }
        }
    }
    let matched_s = started.elapsed().as_secs_f64();
    cancel.cancel();
    for s in servers {
        s.shutdown(Duration::from_secs(1)).await;
    }
    Row {
        store: name.into(),
        registrations_s,
        matched_s,
        retries,
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    eprintln!("redb…");
    let redb: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("board.redb")).unwrap());
    rows.push(run("redb, 1 bulletin", vec![redb]).await);
    match EtcdServer::start(dir.path()).await {
        Ok(etcd) => {
            for replicas in [1usize, 2] {
                eprintln!("etcd, {replicas} bulletin(s)…");
                let address = etcd.address(&format!("bench{replicas}"));
                let mut stores: Vec<Arc<dyn Store>> = Vec::new();
                for _ in 0..replicas {
                    stores.push(Arc::new(EtcdStore::connect(address.clone()).await.unwrap()));
                }
                rows.push(run(&format!("etcd, {replicas} bulletin(s)"), stores).await);
            }
        }
        Err(e) => eprintln!("skipping etcd: {e}"),
    }
    println!(
        "\n{VOLUNTEERS} registrations ({IN_FLIGHT} in flight) matched to {REQUESTS} requests of {PER_REQUEST}\n"
    );
    println!(
        "| store | registrations taken (s) | registrations/s | all requests matched (s) | busy, retried |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.0} | {:.2} | {} |",
            r.store,
            r.registrations_s,
            VOLUNTEERS as f64 / r.registrations_s,
            r.matched_s,
            r.retries
        );
    }
}
