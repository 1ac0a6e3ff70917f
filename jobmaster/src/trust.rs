//! The owner's trust book: what every pseudonym that worked for her has
//! earned, kept in a store that outlives jobs (`STATE/owner/trust.redb` in
//! Tor mode), so a volunteer who answered honestly before starts the next job
//! with that trust, and one caught lying is turned away at the door.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tormr_core::identity::PublicKey;
use tormr_core::spec::VerifyPolicy;
use tormr_core::store::{Store, StoreError, StoreExt};

/// One pseudonym's record with this owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// Consecutive answers confirmed by another copy since the last dispute.
    pub streak: u32,
    /// All confirmed answers.
    pub agreed: u64,
    /// When it was banned (Unix seconds), and why.
    pub banned: Option<(u64, String)>,
}

impl TrustRecord {
    pub fn trust(&self, policy: &VerifyPolicy) -> f64 {
        if self.banned.is_some() {
            0.0
        } else {
            policy.trust(self.streak)
        }
    }
}

/// Typed access to the trust records in a store.
#[derive(Clone)]
pub struct TrustBook {
    store: Arc<dyn Store>,
}

fn key(pseudonym: &PublicKey) -> String {
    format!("trust/{pseudonym}")
}

impl TrustBook {
    pub fn new(store: Arc<dyn Store>) -> Self {
        TrustBook { store }
    }

    pub async fn get(&self, pseudonym: &PublicKey) -> Result<TrustRecord, StoreError> {
        Ok(self
            .store
            .get_json(&key(pseudonym))
            .await?
            .unwrap_or_default())
    }

    async fn update(
        &self,
        pseudonym: &PublicKey,
        change: impl FnOnce(&mut TrustRecord),
    ) -> Result<TrustRecord, StoreError> {
        let mut record = self.get(pseudonym).await?;
        change(&mut record);
        self.store.put_json(&key(pseudonym), &record).await?;
        Ok(record)
    }

    /// Another copy confirmed one of its answers.
    pub async fn agreed(&self, pseudonym: &PublicKey) -> Result<TrustRecord, StoreError> {
        self.update(pseudonym, |r| {
            r.streak = r.streak.saturating_add(1);
            r.agreed = r.agreed.saturating_add(1);
        })
        .await
    }

    /// Its answer lost a dispute: trust gone, banned for good.
    pub async fn ban(&self, pseudonym: &PublicKey, why: &str) -> Result<TrustRecord, StoreError> {
        let now = tormr_core::unix_now();
        self.update(pseudonym, |r| {
            r.streak = 0;
            r.banned = Some((now, why.to_owned()));
        })
        .await
    }

    /// Every pseudonym banned so far.
    pub async fn banned(&self) -> Result<Vec<PublicKey>, StoreError> {
        let all: Vec<(String, TrustRecord)> = self.store.scan_json("trust/").await?;
        Ok(all
            .into_iter()
            .filter(|(_, r)| r.banned.is_some())
            .filter_map(|(k, _)| PublicKey::parse(k.trim_start_matches("trust/")).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tormr_core::identity::Identity;
    use tormr_core::store::memory::MemoryStore;

    #[tokio::test]
    async fn trust_grows_with_agreement_and_a_ban_ends_it() {
        let book = TrustBook::new(Arc::new(MemoryStore::new()));
        let policy = VerifyPolicy::default();
        let me = Identity::generate().public();
        assert_eq!(book.get(&me).await.unwrap().trust(&policy), 0.0);
        for _ in 0..5 {
            book.agreed(&me).await.unwrap();
        }
        assert!((book.get(&me).await.unwrap().trust(&policy) - 0.5).abs() < 1e-9);
        let banned = book.ban(&me, "lied about task s0-m-1").await.unwrap();
        assert_eq!(banned.trust(&policy), 0.0);
        assert_eq!(banned.agreed, 5);
        assert_eq!(book.banned().await.unwrap(), vec![me]);
    }
}
