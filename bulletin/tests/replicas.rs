//! Two bulletins sharing one board through a real etcd: what one takes, the
//! other serves; concurrent changes through both are never lost; a client
//! given both addresses carries on when one dies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{caps, request};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_bulletin::service::shared_identity;
use tormr_bulletin::{BoardConfig, Bulletin, BulletinClient};
use tormr_core::identity::Identity;
use tormr_core::store::Store;
use tormr_core::wire::bulletin::{RequestState, TicketAnswer};
use tormr_etcd::EtcdStore;
use tormr_etcd::testing::EtcdServer;
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{Server, ServerConfig, Transport};

struct Replica {
    server: Server,
    cancel: CancellationToken,
}

async fn replica(etcd: &EtcdServer, namespace: &str) -> Replica {
    let store: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(etcd.address(namespace)).await.unwrap());
    let identity = shared_identity(store.as_ref(), Identity::generate())
        .await
        .unwrap();
    let board = Bulletin::open(store, identity, BoardConfig::default())
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    board.spawn_ticker(cancel.clone());
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
    let server = Server::spawn(
        transport.publish(&ServiceSpec::new("b")).await.unwrap(),
        board,
        ServerConfig::default(),
    );
    Replica { server, cancel }
}

fn client(replicas: &[&Replica]) -> BulletinClient {
    let addresses: Vec<_> = replicas
        .iter()
        .map(|r| r.server.address().clone())
        .collect();
    BulletinClient::for_replicas(Arc::new(TcpTransport::new()), &addresses).unwrap()
}

/// A fresh etcd (in its folder) and two replicas of one board on it.
async fn two_replicas() -> (tempfile::TempDir, EtcdServer, Replica, Replica) {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path()).await.unwrap();
    let a = replica(&etcd, "board").await;
    let b = replica(&etcd, "board").await;
    (dir, etcd, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_one_board_and_lose_no_concurrent_change() {
    let (_dir, _etcd, a, b) = two_replicas().await;
    let (via_a, via_b) = (client(&[&a]), client(&[&b]));
    assert_eq!(
        via_a.info().await.unwrap().board,
        via_b.info().await.unwrap().board,
        "replicas sign with one board key"
    );

    // 60 volunteers register at once, half through each replica.
    let mut joins = Vec::new();
    for i in 0..60 {
        let c = if i % 2 == 0 {
            via_a.clone()
        } else {
            via_b.clone()
        };
        joins.push(tokio::spawn(async move {
            c.register(&Identity::generate(), caps(), None, None)
                .await
                .unwrap()
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    // Each replica follows the other's writes within its next tick.
    for via in [&via_a, &via_b] {
        let mut seen = 0;
        for _ in 0..30 {
            seen = via.info().await.unwrap().volunteers;
            if seen == 60 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, 60, "no registration was lost between replicas");
    }

    // A request posted through b is matched, and its tickets collected
    // through a, at once (a catches up before it answers).
    let job = Identity::generate();
    let vol = Identity::generate();
    let posted = via_b.post_request(&job, &request(61)).await.unwrap();
    via_a.register(&vol, caps(), None, None).await.unwrap();
    match via_a
        .watch(&posted.request, 0, Duration::from_secs(5))
        .await
        .unwrap()
    {
        RequestState::Matched { workers } => assert_eq!(workers.len(), 61),
        other => panic!("expected a match, got {other:?}"),
    }
    match via_a
        .poll_ticket(&vol, Duration::from_secs(5))
        .await
        .unwrap()
    {
        TicketAnswer::Ticket { ticket } => {
            assert_eq!(ticket.open_by(&posted.board).unwrap().job_key, job.public());
        }
        other => panic!("expected a ticket, got {other:?}"),
    }
    a.cancel.cancel();
    b.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fails_over_when_its_replica_dies() {
    let (_dir, _etcd, a, b) = two_replicas().await;
    let both = client(&[&a, &b]);
    let vol = Identity::generate();
    both.register(&vol, caps(), None, None).await.unwrap();
    assert_eq!(both.http().address(), a.server.address());

    a.cancel.cancel();
    a.server.shutdown(Duration::from_secs(1)).await;
    // The volunteer's next poll lands on b, which knows it.
    let answer = both
        .poll_ticket(&vol, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(matches!(answer, TicketAnswer::Waiting), "{answer:?}");
    assert_eq!(both.http().address(), b.server.address());
    assert_eq!(both.info().await.unwrap().volunteers, 1);
    b.cancel.cancel();
}
