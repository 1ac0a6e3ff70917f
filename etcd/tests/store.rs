//! The store contract and etcd-specific behaviour, against a real etcd.

use tormr_core::store::{Batch, Store, StoreError, StoreExt};
use tormr_etcd::testing::EtcdServer;
use tormr_etcd::{EtcdAddress, EtcdStore};

#[tokio::test]
async fn etcd_store_passes_the_store_suite_and_keeps_namespaces_apart() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path()).await.unwrap();
    let store = EtcdStore::connect(etcd.address("suite")).await.unwrap();
    tormr_core::store::suite::run(&store).await;

    // Another namespace on the same server sees none of it, and a prefix
    // delete in one leaves the other alone.
    let other = EtcdStore::connect(etcd.address("other")).await.unwrap();
    assert!(other.scan("").await.unwrap().is_empty());
    other.put_json("jobs", &"mine").await.unwrap();
    store.apply(Batch::new().delete_prefix("")).await.unwrap();
    assert!(store.scan("").await.unwrap().is_empty());
    assert_eq!(
        other.get_json::<String>("jobs").await.unwrap().as_deref(),
        Some("mine")
    );
}

#[tokio::test]
async fn batches_that_touch_a_key_twice_apply_their_final_effect() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path()).await.unwrap();
    let store = EtcdStore::connect(etcd.address("twice")).await.unwrap();
    store
        .apply(
            Batch::new()
                .put("t/a", b"1".to_vec())
                .put("t/b", b"1".to_vec())
                .put("u", b"1".to_vec()),
        )
        .await
        .unwrap();
    // A subtree reset: delete the prefix, then write it anew, in one batch.
    let applied = store
        .apply(
            Batch::new()
                .put("u", b"2".to_vec())
                .delete("u")
                .put("u", b"3".to_vec())
                .delete_prefix("t/")
                .put("t/c", b"new".to_vec())
                .require_equal("t/a", b"1".to_vec()),
        )
        .await
        .unwrap();
    assert!(applied);
    let keys: Vec<String> = store
        .scan("")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["t/c", "u"]);
    assert_eq!(store.get("u").await.unwrap(), Some(b"3".to_vec()));
}

#[tokio::test]
async fn scans_page_through_thousands_of_keys() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path()).await.unwrap();
    let store = EtcdStore::connect(etcd.address("many")).await.unwrap();
    let mut batch = Batch::new();
    for i in 0..2_345 {
        batch = batch.put(format!("vol/{i:05}"), vec![b'x'; 100]);
    }
    assert!(store.apply(batch).await.unwrap());
    let all = store.scan("vol/").await.unwrap();
    assert_eq!(all.len(), 2_345);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
    assert_eq!(all[2_344].0, "vol/02344");
}

#[tokio::test]
async fn an_unreachable_etcd_is_a_clear_error_not_a_hang() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = EtcdAddress::parse(&format!("etcd://127.0.0.1:{port}/x")).unwrap();
    let started = std::time::Instant::now();
    let err = match EtcdStore::connect(address).await {
        Err(e) => e,
        Ok(_) => panic!("connected to nothing"),
    };
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("etcd"), "{err}");
}

#[tokio::test]
async fn a_store_outlives_an_etcd_restart() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path()).await.unwrap();
    let address = etcd.address("restart");
    EtcdStore::connect(address.clone())
        .await
        .unwrap()
        .put_json("board/gen", &7u64)
        .await
        .unwrap();
    let (client, peer) = etcd.ports;
    drop(etcd);
    let etcd = EtcdServer::start_on(dir.path(), client, peer)
        .await
        .unwrap();
    let store = EtcdStore::connect(etcd.address("restart")).await.unwrap();
    assert_eq!(store.get_json::<u64>("board/gen").await.unwrap(), Some(7));
}
