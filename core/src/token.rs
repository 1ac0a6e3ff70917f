//! Capability tokens: the job master's permission for one verb on one bucket.
//!
//! The job master and the data layer are both the owner's, and share a secret.
//! A token is `tc1.<claims>.<mac>`: base64url JSON claims (job, bucket, verb,
//! expiry) and an HMAC-SHA256 over them. The data layer checks the MAC, the
//! expiry, and that the claims name exactly the bucket and verb of the request,
//! so a worker can fetch only the buckets of the tasks it was given.
//!
//! The same secret signs the data layer's *receipts*: `tr1.<mac>` over a
//! job, a bucket and its size, handed to whoever completed or looked up the
//! bucket. A worker passes the receipt on in its report, and the job master
//! checks it with the shared secret instead of asking the data layer whether
//! the output is really there: one request fewer per task.

use crate::encoding::{b64, unb64};
use crate::ids::{BucketId, JobId};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;
const PREFIX: &str = "tc1";
const RECEIPT_PREFIX: &str = "tr1";

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// Read one bucket.
    Get,
    /// Write one bucket (once; a finished bucket is immutable).
    Put,
    /// Delete every bucket of a job (the owner's clean-up).
    Delete,
}

/// The claims a token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub job: JobId,
    /// `None` only for job-wide verbs (delete).
    pub bucket: Option<BucketId>,
    pub verb: Verb,
    /// Unix seconds after which the token is refused.
    pub expires: u64,
}

/// Why a token was refused. The messages never echo the token itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the capability token is malformed")]
    Malformed,
    #[error("the capability token was not minted by this data layer's job master (bad signature)")]
    Forged,
    #[error("the capability token expired; ask the job master for a fresh task")]
    Expired,
    #[error("the capability token does not grant {verb:?} on this bucket")]
    WrongScope { verb: Verb },
}

/// The secret shared by a job master and its data layer.
#[derive(Clone)]
pub struct TokenSecret([u8; 32]);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

impl TokenSecret {
    pub fn random() -> Self {
        TokenSecret(crate::random::bytes::<32>())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenSecret(bytes)
    }

    /// Loads the secret from `path` (base64url text), creating it if absent.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a tormr data-layer secret (32 bytes, base64url)",
                        path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = Self::random();
                crate::identity::write_private(path, secret.to_text().as_bytes())?;
                Ok(secret)
            }
            Err(e) => Err(e),
        }
    }

    /// Loads an existing secret (never creates one: a new secret would make
    /// every token the data layer sees look forged).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Self::parse(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is not a tormr data-layer secret (32 bytes, base64url)",
                    path.display()
                ),
            )
        })
    }

    pub fn parse(text: &str) -> Option<Self> {
        let raw = unb64(text.trim()).ok()?;
        Some(TokenSecret(raw.try_into().ok()?))
    }

    pub fn to_text(&self) -> String {
        b64(&self.0)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes.
        match <HmacSha256 as KeyInit>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// Mints a token for `cap`.
    pub fn mint(&self, cap: &Capability) -> String {
        let claims = b64(serde_json::to_string(cap).unwrap_or_default().as_bytes());
        let mut mac = self.mac();
        mac.update(PREFIX.as_bytes());
        mac.update(b".");
        mac.update(claims.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{PREFIX}.{claims}.{}", b64(&tag))
    }

    /// Checks a token's MAC and expiry and returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Capability, TokenError> {
        let mut parts = token.split('.');
        let (Some(PREFIX), Some(claims), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let tag = unb64(tag).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(PREFIX.as_bytes());
        mac.update(b".");
        mac.update(claims.as_bytes());
        mac.verify_slice(&tag).map_err(|_| TokenError::Forged)?;
        let raw = unb64(claims).map_err(|_| TokenError::Malformed)?;
        let cap: Capability = serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)?;
        if cap.expires < now {
            return Err(TokenError::Expired);
        }
        Ok(cap)
    }

    fn receipt_mac(&self, job: &JobId, bucket: &BucketId, size: u64) -> HmacSha256 {
        let mut mac = self.mac();
        // The prefix keeps a receipt's MAC from ever equalling a token's.
        mac.update(RECEIPT_PREFIX.as_bytes());
        mac.update(format!(".{job}.{bucket}.{size}").as_bytes());
        mac
    }

    /// The data layer's receipt for a complete bucket of `size` bytes.
    pub fn receipt(&self, job: &JobId, bucket: &BucketId, size: u64) -> String {
        let tag = self.receipt_mac(job, bucket, size).finalize().into_bytes();
        format!("{RECEIPT_PREFIX}.{}", b64(&tag))
    }

    /// True if `receipt` is this secret's word that `bucket` of `job` is
    /// stored whole with `size` bytes.
    pub fn check_receipt(&self, receipt: &str, job: &JobId, bucket: &BucketId, size: u64) -> bool {
        let Some(tag) = receipt
            .strip_prefix(RECEIPT_PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|t| unb64(t).ok())
        else {
            return false;
        };
        self.receipt_mac(job, bucket, size)
            .verify_slice(&tag)
            .is_ok()
    }

    /// Checks that `token` grants `verb` on `bucket` of `job` at time `now`.
    pub fn check(
        &self,
        token: &str,
        job: &JobId,
        bucket: Option<&BucketId>,
        verb: Verb,
        now: u64,
    ) -> Result<Capability, TokenError> {
        self.check_any(token, job, bucket, &[verb], now)
    }

    /// Checks that `token` grants one of `verbs` (the first is named if it
    /// grants none) on `bucket` of `job` at time `now`.
    pub fn check_any(
        &self,
        token: &str,
        job: &JobId,
        bucket: Option<&BucketId>,
        verbs: &[Verb],
        now: u64,
    ) -> Result<Capability, TokenError> {
        let cap = self.verify(token, now)?;
        if &cap.job != job || cap.bucket.as_ref() != bucket || !verbs.contains(&cap.verb) {
            return Err(TokenError::WrongScope {
                verb: verbs.first().copied().unwrap_or(cap.verb),
            });
        }
        Ok(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(verb: Verb) -> Capability {
        Capability {
            job: JobId::parse("job-a").unwrap(),
            bucket: Some(BucketId::parse("in-00001").unwrap()),
            verb,
            expires: 1000,
        }
    }

    #[test]
    fn minted_token_checks_for_its_scope_only() {
        let secret = TokenSecret::random();
        let c = cap(Verb::Get);
        let token = secret.mint(&c);
        let bucket = c.bucket.clone().unwrap();
        assert_eq!(
            secret
                .check(&token, &c.job, Some(&bucket), Verb::Get, 999)
                .unwrap(),
            c
        );
        assert_eq!(
            secret.check(&token, &c.job, Some(&bucket), Verb::Put, 999),
            Err(TokenError::WrongScope { verb: Verb::Put })
        );
        let other = BucketId::parse("in-00002").unwrap();
        assert!(
            secret
                .check(&token, &c.job, Some(&other), Verb::Get, 999)
                .is_err()
        );
        let other_job = JobId::parse("job-b").unwrap();
        assert!(
            secret
                .check(&token, &other_job, Some(&bucket), Verb::Get, 999)
                .is_err()
        );
        assert_eq!(secret.verify(&token, 1001), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_malformed_tokens_fail() {
        let secret = TokenSecret::random();
        let token = secret.mint(&cap(Verb::Get));
        assert_eq!(
            TokenSecret::random().verify(&token, 0),
            Err(TokenError::Forged)
        );
        // Claims edited to widen the verb: the MAC no longer matches.
        let parts: Vec<&str> = token.split('.').collect();
        let widened = b64(serde_json::to_string(&cap(Verb::Put)).unwrap().as_bytes());
        let forged = format!("{}.{}.{}", parts[0], widened, parts[2]);
        assert_eq!(secret.verify(&forged, 0), Err(TokenError::Forged));
        for junk in ["", "tc1", "tc1.a.b.c", "x.y.z", "tc1.!!.!!"] {
            assert!(secret.verify(junk, 0).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn a_receipt_holds_only_for_its_bucket_size_and_secret() {
        let secret = TokenSecret::random();
        let job = JobId::parse("job-a").unwrap();
        let bucket = BucketId::parse("in-00001").unwrap();
        let receipt = secret.receipt(&job, &bucket, 64);
        assert!(secret.check_receipt(&receipt, &job, &bucket, 64));
        assert!(!secret.check_receipt(&receipt, &job, &bucket, 65));
        let other = BucketId::parse("in-00002").unwrap();
        assert!(!secret.check_receipt(&receipt, &job, &other, 64));
        let other_job = JobId::parse("job-b").unwrap();
        assert!(!secret.check_receipt(&receipt, &other_job, &bucket, 64));
        assert!(!TokenSecret::random().check_receipt(&receipt, &job, &bucket, 64));
        // A token is no receipt, whatever it names.
        let token = secret.mint(&cap(Verb::Put));
        assert!(!secret.check_receipt(&token, &job, &bucket, 64));
        for junk in ["", "tr1", "tr1.", "tr1.!!", "x.y"] {
            assert!(!secret.check_receipt(junk, &job, &bucket, 64), "{junk:?}");
        }
    }

    #[test]
    fn secret_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let a = TokenSecret::load_or_create(&path).unwrap();
        let b = TokenSecret::load_or_create(&path).unwrap();
        let token = a.mint(&cap(Verb::Get));
        assert!(b.verify(&token, 0).is_ok());
    }
}
