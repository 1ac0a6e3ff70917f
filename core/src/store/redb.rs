//! The embedded store: one redb file in the role's state folder.

use super::{Batch, Op, Store, StoreError, conditions_hold};
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |why: String| StoreError::Open {
            path: path.display().to_string(),
            why,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| open_err(e.to_string()))?;
        }
        let db = Database::create(path).map_err(|e| open_err(e.to_string()))?;
        // Create the table up front so reads never meet a missing table.
        let tx = db.begin_write().map_err(|e| open_err(e.to_string()))?;
        tx.open_table(KV).map_err(|e| open_err(e.to_string()))?;
        tx.commit().map_err(|e| open_err(e.to_string()))?;
        Ok(RedbStore {
            db: Arc::new(db),
            path: path.to_owned(),
        })
    }

    fn get_sync(db: &Database, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = db.begin_read().map_err(backend)?;
        let table = tx.open_table(KV).map_err(backend)?;
        Ok(table.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    fn apply_sync(db: &Database, batch: Batch) -> Result<bool, StoreError> {
        let tx = db.begin_write().map_err(backend)?;
        {
            let mut table = tx.open_table(KV).map_err(backend)?;
            let holds = conditions_hold(&batch.conditions, |k| {
                Ok(table.get(k).map_err(backend)?.map(|v| v.value().to_vec()))
            })?;
            if !holds {
                return Ok(false);
            }
            for op in &batch.ops {
                match op {
                    Op::Put(k, v) => {
                        table.insert(k.as_str(), v.as_slice()).map_err(backend)?;
                    }
                    Op::Delete(k) => {
                        table.remove(k.as_str()).map_err(backend)?;
                    }
                    Op::DeletePrefix(p) => {
                        let p = p.clone();
                        table.retain(|k, _| !k.starts_with(&p)).map_err(backend)?;
                    }
                }
            }
        }
        tx.commit().map_err(backend)?;
        Ok(true)
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Self::get_sync(&self.db, key)
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(KV).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range(prefix..).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    async fn apply(&self, batch: Batch) -> Result<bool, StoreError> {
        // Commits fsync; keep them off the async threads.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || Self::apply_sync(&db, batch))
            .await
            .map_err(|e| StoreError::Backend(format!("store writer stopped: {e}")))?
    }

    fn describe(&self) -> String {
        format!("redb {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::super::suite::run(&RedbStore::open(&dir.path().join("s.redb")).unwrap()).await;
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            s.apply(Batch::new().put("a", b"1".to_vec())).await.unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get("a").await.unwrap(), Some(b"1".to_vec()));
    }
}
