//! The store: where job state and board state survive a crash.
//!
//! One ordered key-value space with `/`-separated keys, atomic batches and
//! compare-and-set conditions — the common ground of redb (embedded, one file,
//! the default) and etcd (for replicated bulletin boards and owners who run it).
//! Values are JSON documents written through [`StoreExt`]. Every backend must
//! pass [`suite::run`].

pub mod memory;
pub mod redb;
pub mod suite;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why the store failed. Callers retry `Unavailable`; the rest are bugs or
/// corruption and stop the service with the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "could not open the store at {path}: {why}; check the state folder's permissions or move a damaged file away"
    )]
    Open { path: String, why: String },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store failed: {0}")]
    Backend(String),
    #[error("stored value at {key} is not valid: {why}")]
    Corrupt { key: String, why: String },
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
    /// Deletes every key starting with the prefix.
    DeletePrefix(String),
}

/// A precondition of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Absent(String),
    Equals(String, Vec<u8>),
}

/// Writes applied all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
    pub conditions: Vec<Condition>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put(key.into(), value));
        self
    }

    pub fn put_json<T: Serialize>(self, key: impl Into<String>, value: &T) -> Self {
        // Plain data structs always serialise.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.put(key, bytes)
    }

    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete(key.into()));
        self
    }

    pub fn delete_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.ops.push(Op::DeletePrefix(prefix.into()));
        self
    }

    pub fn require_absent(mut self, key: impl Into<String>) -> Self {
        self.conditions.push(Condition::Absent(key.into()));
        self
    }

    pub fn require_equal(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.conditions.push(Condition::Equals(key.into(), value));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every key starting with `prefix`, in key order.
    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Applies the batch if all its conditions hold; returns whether it did.
    async fn apply(&self, batch: Batch) -> Result<bool, StoreError>;
    /// A name for logs and errors ("redb /path", "memory", "etcd host:port").
    fn describe(&self) -> String;
}

/// Typed JSON access on any store.
#[async_trait]
pub trait StoreExt: Store {
    async fn get_json<T: DeserializeOwned + Send>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.get(key).await? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key: key.to_owned(),
                    why: e.to_string(),
                }),
        }
    }

    async fn scan_json<T: DeserializeOwned + Send>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for (key, raw) in self.scan(prefix).await? {
            let value = serde_json::from_slice(&raw).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                why: e.to_string(),
            })?;
            out.push((key, value));
        }
        Ok(out)
    }

    async fn put_json<T: Serialize + Sync>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        self.apply(Batch::new().put_json(key, value))
            .await
            .map(|_| ())
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// Checks conditions against a lookup function (shared by the embedded backends).
pub(crate) fn conditions_hold(
    conditions: &[Condition],
    mut lookup: impl FnMut(&str) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<bool, StoreError> {
    for c in conditions {
        let ok = match c {
            Condition::Absent(k) => lookup(k)?.is_none(),
            Condition::Equals(k, v) => lookup(k)?.as_deref() == Some(v.as_slice()),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}
