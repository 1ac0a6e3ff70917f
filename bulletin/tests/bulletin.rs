//! The bulletin over loopback HTTP: matching, long-polls, signatures, restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{caps, request};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_bulletin::{BoardConfig, Bulletin, BulletinClient};
use tormr_core::identity::{Identity, Signed};
use tormr_core::store::redb::RedbStore;
use tormr_core::wire::bulletin::{Register, Registration, RequestState, TicketAnswer};
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{HttpClient, Server, ServerConfig, Transport};

struct Running {
    server: Server,
    cancel: CancellationToken,
    client: BulletinClient,
}

async fn start(state: &std::path::Path, port: u16) -> Running {
    let store = Arc::new(RedbStore::open(&state.join("board.redb")).unwrap());
    let identity = Identity::load_or_create(&state.join("board.key")).unwrap();
    let bulletin = Bulletin::open(store, identity, BoardConfig::default())
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    bulletin.spawn_ticker(cancel.clone());
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
    let listener = transport
        .publish(&ServiceSpec::new("b").on_port(port))
        .await
        .unwrap();
    let server = Server::spawn(listener, bulletin, ServerConfig::default());
    let client = BulletinClient::new(HttpClient::new(transport, server.address().clone()));
    Running {
        server,
        cancel,
        client,
    }
}

#[tokio::test]
async fn volunteers_long_poll_into_signed_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), 0).await;
    let job = Identity::generate();
    let posted = b.client.post_request(&job, &request(2)).await.unwrap();

    let mut waiters = Vec::new();
    for _ in 0..2 {
        let client = b.client.clone();
        waiters.push(tokio::spawn(async move {
            let me = Identity::generate();
            client.register(&me, caps(), None, None).await.unwrap();
            loop {
                match client
                    .poll_ticket(&me, Duration::from_secs(10))
                    .await
                    .unwrap()
                {
                    TicketAnswer::Ticket { ticket } => return (me.public(), ticket),
                    TicketAnswer::Waiting => continue,
                    TicketAnswer::Unregistered => panic!("lost registration"),
                }
            }
        }));
    }
    // The owner sees the match through its own long-poll.
    let mut seen = 0;
    let matched = loop {
        match b
            .client
            .watch(&posted.request, seen, Duration::from_secs(10))
            .await
            .unwrap()
        {
            RequestState::Matched { workers } => break workers,
            RequestState::Gathering { have, .. } => seen = have,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(matched.len(), 2);
    for w in waiters {
        let (me, ticket) = w.await.unwrap();
        let t = ticket
            .open_by(&posted.board)
            .expect("ticket signed by the board");
        assert_eq!(t.worker, me);
        assert_eq!(t.job_key, job.public());
        assert!(matched.iter().any(|m| m.pseudonym == me));
    }
    b.cancel.cancel();
}

#[tokio::test]
async fn forged_registrations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), 0).await;
    let me = Identity::generate();
    let reg = Registration {
        capabilities: caps(),
        trusted_by: None,
        discovery_key: None,
        issued_at: tormr_core::unix_now(),
    };
    let mut signed = Signed::sign(&me, &reg);
    signed.signer = Identity::generate().public();
    let err = b.client.http().call(&Register(signed)).await.unwrap_err();
    assert_eq!(err.code(), Some("unauthorized"));
    // A registration signed long ago (a replay) is refused too.
    let old = Registration {
        capabilities: caps(),
        trusted_by: None,
        discovery_key: None,
        issued_at: 1000,
    };
    let err = b
        .client
        .http()
        .call(&Register(Signed::sign(&me, &old)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("clock"), "{err}");
    assert_eq!(b.client.info().await.unwrap().volunteers, 0);
}

#[tokio::test]
async fn a_restarted_board_keeps_its_key_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), 0).await;
    let port = b.server.address().port();
    let key = b.client.info().await.unwrap().board;
    let job = Identity::generate();
    let posted = b.client.post_request(&job, &request(3)).await.unwrap();
    let vol = Identity::generate();
    b.client.register(&vol, caps(), None, None).await.unwrap();
    b.cancel.cancel();
    b.server.shutdown(Duration::from_secs(1)).await;

    let b2 = start(dir.path(), port).await;
    let info = b2.client.info().await.unwrap();
    assert_eq!(info.board, key);
    assert_eq!(info.volunteers, 1);
    assert_eq!(
        b2.client
            .watch(&posted.request, 99, Duration::from_secs(0))
            .await
            .unwrap(),
        RequestState::Gathering { have: 1, wanted: 3 }
    );
    b2.cancel.cancel();
}

#[tokio::test]
async fn an_owners_ban_survives_a_restart_and_a_forged_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), 0).await;
    let port = b.server.address().port();
    let owner = Identity::generate();
    let (liar, honest) = (Identity::generate(), Identity::generate());
    b.client
        .ban(&owner, &liar.public(), "lied in a job")
        .await
        .unwrap();

    // A ban whose signature does not match its signer.
    let mut forged = Signed::sign(
        &Identity::generate(),
        &tormr_core::wire::bulletin::Ban {
            worker: honest.public(),
            issued_at: tormr_core::unix_now(),
            reason: String::new(),
        },
    );
    forged.signer = owner.public();
    let http = HttpClient::new(Arc::new(TcpTransport::new()), b.server.address().clone());
    let refused = http
        .call(&tormr_core::wire::bulletin::PostBan(forged))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, tormr_net::ClientError::Api { status: 401, .. }),
        "{refused}"
    );
    b.cancel.cancel();
    b.server.shutdown(Duration::from_secs(1)).await;

    // After a restart the liar, registered first, is still passed over for
    // this owner's request.
    let b2 = start(dir.path(), port).await;
    b2.client.register(&liar, caps(), None, None).await.unwrap();
    b2.client
        .register(&honest, caps(), None, None)
        .await
        .unwrap();
    let job = Identity::generate();
    let mut wanted = request(1);
    wanted.owner = Some(Signed::sign(
        &owner,
        &tormr_core::wire::job::OwnerEndorsement {
            job_key: job.public(),
            issued_at: tormr_core::unix_now(),
        },
    ));
    let posted = b2.client.post_request(&job, &wanted).await.unwrap();
    let state = b2
        .client
        .watch(&posted.request, 0, Duration::from_secs(5))
        .await
        .unwrap();
    let RequestState::Matched { workers } = state else {
        panic!("not matched: {state:?}")
    };
    assert_eq!(
        workers.iter().map(|w| w.pseudonym).collect::<Vec<_>>(),
        vec![honest.public()]
    );
    b2.cancel.cancel();
}
