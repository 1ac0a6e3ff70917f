//! The behaviour every store backend must show. Backends in other crates
//! (etcd) call [`run`] from their own tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{Batch, Store, StoreExt};

/// Runs the store contract against `store`, which must start empty.
pub async fn run(store: &dyn Store) {
    // Put, get, overwrite.
    assert!(
        store
            .apply(Batch::new().put("job/a", b"1".to_vec()))
            .await
            .unwrap()
    );
    assert_eq!(store.get("job/a").await.unwrap(), Some(b"1".to_vec()));
    store
        .apply(Batch::new().put("job/a", b"2".to_vec()))
        .await
        .unwrap();
    assert_eq!(store.get("job/a").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get("job/missing").await.unwrap(), None);

    // Scans see exactly the prefix, in key order.
    store
        .apply(
            Batch::new()
                .put("job/c", b"3".to_vec())
                .put("job/b", b"x".to_vec())
                .put("jobs", b"no".to_vec())
                .put("joa", b"no".to_vec()),
        )
        .await
        .unwrap();
    let keys: Vec<String> = store
        .scan("job/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["job/a", "job/b", "job/c"]);

    // Failed conditions write nothing.
    let applied = store
        .apply(
            Batch::new()
                .put("job/d", b"4".to_vec())
                .require_absent("job/a"),
        )
        .await
        .unwrap();
    assert!(!applied);
    assert_eq!(store.get("job/d").await.unwrap(), None);
    let applied = store
        .apply(
            Batch::new()
                .put("job/d", b"4".to_vec())
                .require_equal("job/a", b"wrong".to_vec()),
        )
        .await
        .unwrap();
    assert!(!applied);

    // Holding conditions apply everything.
    let applied = store
        .apply(
            Batch::new()
                .put("job/d", b"4".to_vec())
                .delete("job/b")
                .require_equal("job/a", b"2".to_vec())
                .require_absent("job/zzz"),
        )
        .await
        .unwrap();
    assert!(applied);
    assert_eq!(store.get("job/d").await.unwrap(), Some(b"4".to_vec()));
    assert_eq!(store.get("job/b").await.unwrap(), None);

    // Prefix deletes stop at the prefix.
    store
        .apply(Batch::new().delete_prefix("job/"))
        .await
        .unwrap();
    assert!(store.scan("job/").await.unwrap().is_empty());
    assert_eq!(store.get("jobs").await.unwrap(), Some(b"no".to_vec()));

    // JSON helpers round-trip.
    store.put_json("t/v", &vec![1u32, 2, 3]).await.unwrap();
    assert_eq!(
        store.get_json::<Vec<u32>>("t/v").await.unwrap(),
        Some(vec![1, 2, 3])
    );
    assert!(
        store.get_json::<String>("t/v").await.is_err(),
        "type mismatch is an error, not a panic"
    );
    assert_eq!(store.scan_json::<Vec<u32>>("t/").await.unwrap().len(), 1);
}
