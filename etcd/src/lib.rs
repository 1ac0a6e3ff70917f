//! The store on etcd.
//!
//! tormr keeps job and board state in one ordered key-value space
//! ([`tormr_core::store::Store`]); redb holds it in a file beside one process,
//! this crate holds it in an etcd cluster so that several processes — two or
//! more bulletin boards serving one board, say — share it and outlive each
//! other. A batch is one etcd transaction: its conditions become the
//! transaction's comparisons and its writes the success branch, so a batch
//! applies whole or not at all, exactly as on redb. Keys live under a
//! namespace (`tormr/` unless the address names another) so one etcd can hold
//! several boards. Every backend passes [`tormr_core::store::suite::run`]; the
//! tests here run it against a real etcd server they start.

mod address;
mod batch;
pub mod testing;

pub use address::{EtcdAddress, ParseError};

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp,
};
use std::time::Duration;
use tormr_core::store::{Batch, Condition, Op, Store, StoreError};

/// Keys fetched per round trip when scanning (keeps replies far below gRPC's
/// message limit whatever the values weigh).
const SCAN_PAGE: i64 = 500;

/// A store in an etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    address: EtcdAddress,
}

fn unavailable(address: &EtcdAddress, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => StoreError::Unavailable(format!(
            "etcd at {} cannot be reached ({e}); check that it runs and that the address is right",
            address.endpoints.join(",")
        )),
        E::GRpcStatus(ref s) if s.message().contains("too many operations") => {
            StoreError::Backend(format!(
                "etcd refused a batch as too large ({e}); start etcd with a larger --max-txn-ops (tormr needs 10000)"
            ))
        }
        // gRPC's UNAVAILABLE (14) and DEADLINE_EXCEEDED (4).
        E::GRpcStatus(ref s) if matches!(s.code() as i32, 4 | 14) => {
            StoreError::Unavailable(format!(
                "etcd at {} did not answer ({e}); it may be restarting or have lost quorum",
                address.endpoints.join(",")
            ))
        }
        other => StoreError::Backend(format!("etcd: {other}")),
    }
}

impl EtcdStore {
    /// Connects to the cluster at `address` (any of its endpoints will do;
    /// the client moves to another when one fails).
    pub async fn connect(address: EtcdAddress) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(address.endpoints.clone(), Some(options))
            .await
            .map_err(|e| StoreError::Open {
                path: address.to_string(),
                why: format!("{e}; check that etcd runs there"),
            })?;
        let store = EtcdStore { client, address };
        // Connecting is lazy: ask once so a wrong address fails here, clearly.
        store
            .get("\u{0}probe")
            .await
            .map_err(|e| StoreError::Open {
                path: store.address.to_string(),
                why: e.to_string(),
            })?;
        Ok(store)
    }

    fn key(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.address.namespace).into_bytes()
    }

    fn unkey(&self, raw: &[u8]) -> Result<String, StoreError> {
        let text = std::str::from_utf8(raw).map_err(|_| StoreError::Corrupt {
            key: String::from_utf8_lossy(raw).into_owned(),
            why: "key is not UTF-8".into(),
        })?;
        Ok(text
            .strip_prefix(&self.address.namespace)
            .unwrap_or(text)
            .to_owned())
    }

    fn comparison(&self, condition: &Condition) -> Compare {
        match condition {
            // A key that does not exist has version 0.
            Condition::Absent(k) => Compare::version(self.key(k), CompareOp::Equal, 0),
            Condition::Equals(k, v) => Compare::value(self.key(k), CompareOp::Equal, v.clone()),
        }
    }

    /// The batch's writes as etcd operations. etcd refuses a transaction
    /// that touches one key twice, so the batch is first flattened into the
    /// writes with the same final effect.
    fn operations(&self, batch: &Batch) -> Vec<TxnOp> {
        let ops = batch.ops.iter().map(|op| match op {
            Op::Put(k, v) => batch::Op::Put(self.key(k), v.clone()),
            Op::Delete(k) => batch::Op::Delete(self.key(k)),
            Op::DeletePrefix(p) => batch::Op::DeletePrefix(self.key(p)),
        });
        batch::flatten(ops)
            .into_iter()
            .map(|w| match w {
                batch::Write::Put(k, v) => TxnOp::put(k, v, None),
                batch::Write::Delete(k) => TxnOp::delete(k, None),
                batch::Write::DeleteRange(from, end) => {
                    TxnOp::delete(from, Some(DeleteOptions::new().with_range(end)))
                }
            })
            .collect()
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut kv = self.client.kv_client();
        let reply = kv
            .get(self.key(key), None)
            .await
            .map_err(|e| unavailable(&self.address, e))?;
        Ok(reply.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut kv = self.client.kv_client();
        let end = batch::range_end(&self.key(prefix));
        let mut from = self.key(prefix);
        let mut out = Vec::new();
        // One revision for every page, so a scan sees one moment of the store.
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(SCAN_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let reply = kv
                .get(from.clone(), Some(options))
                .await
                .map_err(|e| unavailable(&self.address, e))?;
            if revision == 0 {
                revision = reply.header().map(|h| h.revision()).unwrap_or(0);
            }
            for item in reply.kvs() {
                out.push((self.unkey(item.key())?, item.value().to_vec()));
            }
            match reply.kvs().last() {
                Some(last) if reply.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    async fn apply(&self, batch: Batch) -> Result<bool, StoreError> {
        let mut kv = self.client.kv_client();
        let txn = Txn::new()
            .when(
                batch
                    .conditions
                    .iter()
                    .map(|c| self.comparison(c))
                    .collect::<Vec<_>>(),
            )
            .and_then(self.operations(&batch));
        let reply = kv
            .txn(txn)
            .await
            .map_err(|e| unavailable(&self.address, e))?;
        Ok(reply.succeeded())
    }

    fn describe(&self) -> String {
        self.address.to_string()
    }
}
