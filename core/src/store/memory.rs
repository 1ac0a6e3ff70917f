//! An in-memory store, for tests and for state that may be lost.

use super::{Batch, Op, Store, StoreError, conditions_hold};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>>, StoreError> {
        self.map
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.get(key).cloned())
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()?
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn apply(&self, batch: Batch) -> Result<bool, StoreError> {
        let mut map = self.lock()?;
        if !conditions_hold(&batch.conditions, |k| Ok(map.get(k).cloned()))? {
            return Ok(false);
        }
        for op in batch.ops {
            match op {
                Op::Put(k, v) => {
                    map.insert(k, v);
                }
                Op::Delete(k) => {
                    map.remove(&k);
                }
                Op::DeletePrefix(p) => map.retain(|k, _| !k.starts_with(&p)),
            }
        }
        Ok(true)
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_store_suite() {
        super::super::suite::run(&super::MemoryStore::new()).await;
    }
}
