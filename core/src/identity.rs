//! Pseudonymous identities and signed messages.
//!
//! Every party that must be recognised again (a volunteer, a job, a bulletin
//! board) is an ed25519 key pair; the public key is its pseudonym. Signed
//! messages travel as a [`Signed`] envelope holding the exact JSON text that was
//! signed, so no canonical encoding is needed, and every signature is bound to a
//! domain string naming the message type, so a signature over one kind of
//! message can never be replayed as another.

use crate::encoding::B64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::Path;

/// A party's public key: its pseudonym on the board and at job masters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey(pub B64<32>);

impl PublicKey {
    /// A short, stable label for logs and tables (the key's first 8 base64 chars).
    pub fn short(&self) -> String {
        crate::encoding::b64(&self.0.0).chars().take(8).collect()
    }

    /// The full key as base64url.
    pub fn to_text(&self) -> String {
        crate::encoding::b64(&self.0.0)
    }

    /// Parses the base64url form printed by [`PublicKey::to_text`].
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let raw = crate::encoding::unb64(text.trim()).map_err(|_| SignatureError::BadKey)?;
        let arr: [u8; 32] = raw.try_into().map_err(|_| SignatureError::BadKey)?;
        VerifyingKey::from_bytes(&arr).map_err(|_| SignatureError::BadKey)?;
        Ok(PublicKey(B64(arr)))
    }

    /// Checks `signature` over `message` in `domain`.
    pub fn verify(
        &self,
        domain: &str,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.0.0).map_err(|_| SignatureError::BadKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0.0);
        key.verify_strict(&domain_message(domain, message), &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Signature(pub B64<64>);

/// Why a signature or key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("the public key is not a valid ed25519 key")]
    BadKey,
    #[error("the signature does not verify")]
    Invalid,
    #[error("the message was signed by {actual}, not by the expected {expected}")]
    WrongSigner { expected: String, actual: String },
    #[error("the signed payload is not a valid {what}: {why}")]
    BadPayload { what: &'static str, why: String },
}

/// Why an identity file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("could not read identity key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("could not write identity key {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "identity key {path} is corrupt (expected 32 bytes); move it away to create a new pseudonym"
    )]
    Corrupt { path: String },
}

fn domain_message(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + 1 + message.len());
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    out.extend_from_slice(message);
    out
}

/// A private signing key. Never serialised onto the wire, never logged.
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public().short())
    }
}

impl Identity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Identity {
            key: SigningKey::from_bytes(&crate::random::bytes::<32>()),
        }
    }

    /// Loads the identity stored at `path`, creating it (mode 0600) if absent, so
    /// a pseudonym survives restarts.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        let shown = path.display().to_string();
        match std::fs::read(path) {
            Ok(raw) => {
                let arr: [u8; 32] = raw
                    .try_into()
                    .map_err(|_| IdentityError::Corrupt { path: shown })?;
                Ok(Identity {
                    key: SigningKey::from_bytes(&arr),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate();
                write_private(path, &id.key.to_bytes()).map_err(|source| IdentityError::Write {
                    path: shown,
                    source,
                })?;
                Ok(id)
            }
            Err(source) => Err(IdentityError::Read {
                path: shown,
                source,
            }),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(B64(self.key.verifying_key().to_bytes()))
    }

    /// Signs `message` in `domain`.
    pub fn sign(&self, domain: &str, message: &[u8]) -> Signature {
        Signature(B64(self
            .key
            .sign(&domain_message(domain, message))
            .to_bytes()))
    }

    /// The identity whose raw secret is `secret` (see [`Self::secret_bytes`]).
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The raw secret, for deriving other secrets from one identity.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

/// Writes a secret file readable only by its owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A message type that can be signed; its domain separates its signatures from
/// every other type's.
pub trait SignedPayload: Serialize + DeserializeOwned {
    const DOMAIN: &'static str;
}

/// A payload together with who signed it and the signature over its exact text.
#[derive(Serialize, Deserialize)]
pub struct Signed<T> {
    /// The JSON text that was signed, kept verbatim.
    pub payload: String,
    pub signer: PublicKey,
    pub signature: Signature,
    #[serde(skip)]
    _type: std::marker::PhantomData<T>,
}

// Manual impls: derives would demand the same traits of `T`, which only
// appears as a marker.
impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Signed {
            payload: self.payload.clone(),
            signer: self.signer,
            signature: self.signature,
            _type: std::marker::PhantomData,
        }
    }
}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("signer", &self.signer)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.payload == other.payload
            && self.signer == other.signer
            && self.signature == other.signature
    }
}

impl<T> Eq for Signed<T> {}

impl<T: SignedPayload> Signed<T> {
    /// Signs `value` with `identity`.
    pub fn sign(identity: &Identity, value: &T) -> Self {
        // Serialising a plain data struct cannot fail; an empty payload would
        // simply fail verification on the other side.
        let payload = serde_json::to_string(value).unwrap_or_default();
        let signature = identity.sign(T::DOMAIN, payload.as_bytes());
        Signed {
            payload,
            signer: identity.public(),
            signature,
            _type: std::marker::PhantomData,
        }
    }

    /// Verifies the signature by whoever signed, and decodes the payload.
    pub fn open(&self) -> Result<T, SignatureError> {
        self.signer
            .verify(T::DOMAIN, self.payload.as_bytes(), &self.signature)?;
        serde_json::from_str(&self.payload).map_err(|e| SignatureError::BadPayload {
            what: T::DOMAIN,
            why: e.to_string(),
        })
    }

    /// Verifies that `expected` signed, and decodes the payload.
    pub fn open_by(&self, expected: &PublicKey) -> Result<T, SignatureError> {
        if &self.signer != expected {
            return Err(SignatureError::WrongSigner {
                expected: expected.short(),
                actual: self.signer.short(),
            });
        }
        self.open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Hello {
        n: u32,
    }
    impl SignedPayload for Hello {
        const DOMAIN: &'static str = "tormr/test/hello/v1";
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Other {
        n: u32,
    }
    impl SignedPayload for Other {
        const DOMAIN: &'static str = "tormr/test/other/v1";
    }

    #[test]
    fn signed_round_trip_and_tamper() {
        let id = Identity::generate();
        let signed = Signed::sign(&id, &Hello { n: 5 });
        assert_eq!(signed.open().unwrap(), Hello { n: 5 });
        assert_eq!(signed.open_by(&id.public()).unwrap(), Hello { n: 5 });

        let mut tampered = signed.clone();
        tampered.payload = "{\"n\":6}".into();
        assert_eq!(tampered.open(), Err(SignatureError::Invalid));

        let other = Identity::generate();
        assert!(matches!(
            signed.open_by(&other.public()),
            Err(SignatureError::WrongSigner { .. })
        ));

        // Substituting the signer breaks the signature.
        let mut swapped = signed.clone();
        swapped.signer = other.public();
        assert_eq!(swapped.open(), Err(SignatureError::Invalid));
    }

    #[test]
    fn signature_cannot_cross_domains() {
        let id = Identity::generate();
        let signed = Signed::sign(&id, &Hello { n: 1 });
        let json = serde_json::to_string(&signed).unwrap();
        let as_other: Signed<Other> = serde_json::from_str(&json).unwrap();
        assert_eq!(as_other.open(), Err(SignatureError::Invalid));
    }

    #[test]
    fn identity_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        let a = Identity::load_or_create(&path).unwrap();
        let b = Identity::load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        std::fs::write(dir.path().join("bad.key"), b"short").unwrap();
        assert!(matches!(
            Identity::load_or_create(&dir.path().join("bad.key")),
            Err(IdentityError::Corrupt { .. })
        ));
        assert!(PublicKey::parse(&a.public().to_text()).is_ok());
        assert!(PublicKey::parse("nonsense").is_err());
    }
}
