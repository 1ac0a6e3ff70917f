//! A job's container image as workers learn of it, and the chunked,
//! content-addressed archive it travels in.
//!
//! There is no registry: the owner exports the image from her engine
//! (`docker save` of the image id, so the archive names no tag), the job master
//! serves the archive in chunks named by their SHA-256, and a worker checks each
//! chunk as it arrives and the whole archive before it loads anything. The
//! image id (the SHA-256 of the image's config, Docker's own content address)
//! keys the worker's cache.

use crate::encoding::{Digest, Hasher};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

/// Size of one archive chunk: the unit a worker fetches, checks and retries.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// Largest image archive a job may name.
pub const MAX_ARCHIVE_BYTES: u64 = 16 << 30;

/// The image a job's code runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// The owner's name for it, for messages only: workers never resolve it.
    pub name: String,
    /// Docker's image id, `sha256:` and 64 hex digits.
    pub id: String,
    /// Where to get it. `None` only in local mode, where the workers share
    /// the owner's engine, which already has the image.
    pub archive: Option<ArchiveRef>,
}

impl ImageRef {
    /// The image id's digest, if `id` is well formed.
    pub fn id_digest(&self) -> Option<Digest> {
        self.id.strip_prefix("sha256:").and_then(Digest::parse)
    }
}

/// An exported image archive, as a list of content-addressed chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRef {
    /// SHA-256 of the whole archive.
    pub digest: Digest,
    pub size: u64,
    /// Every chunk is this long but the last.
    pub chunk_bytes: u64,
    pub chunks: Vec<Digest>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    #[error(
        "the image archive is {size} bytes; the most a job may ship is {max} (use a smaller base image)"
    )]
    TooLarge { size: u64, max: u64 },
    #[error(
        "the image archive lists {chunks} chunks of {chunk_bytes} bytes, which cannot hold {size} bytes"
    )]
    Inconsistent {
        chunks: usize,
        chunk_bytes: u64,
        size: u64,
    },
    #[error("reading the image archive {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ArchiveRef {
    /// Chunks `path` and digests every chunk and the whole file.
    pub fn of_file(path: &Path, chunk_bytes: u64) -> Result<Self, ArchiveError> {
        let io = |source| ArchiveError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut whole = Hasher::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let mut chunk = Hasher::new();
            let mut in_chunk = 0u64;
            while in_chunk < chunk_bytes {
                let want = buf.len().min((chunk_bytes - in_chunk) as usize);
                let n = file.read(&mut buf[..want]).map_err(io)?;
                if n == 0 {
                    break;
                }
                chunk.update(&buf[..n]);
                whole.update(&buf[..n]);
                in_chunk += n as u64;
            }
            if in_chunk == 0 {
                break;
            }
            size += in_chunk;
            chunks.push(chunk.finish());
            if in_chunk < chunk_bytes {
                break;
            }
        }
        let archive = ArchiveRef {
            digest: whole.finish(),
            size,
            chunk_bytes,
            chunks,
        };
        archive.check()?;
        Ok(archive)
    }

    /// Checks that the chunk list can describe `size` bytes, so a worker never
    /// sizes a download from a job master's unchecked numbers.
    pub fn check(&self) -> Result<(), ArchiveError> {
        if self.size > MAX_ARCHIVE_BYTES {
            return Err(ArchiveError::TooLarge {
                size: self.size,
                max: MAX_ARCHIVE_BYTES,
            });
        }
        let consistent = self.chunk_bytes > 0
            && self.chunk_bytes <= 64 << 20
            && self.size.div_ceil(self.chunk_bytes) == self.chunks.len() as u64;
        if consistent {
            Ok(())
        } else {
            Err(ArchiveError::Inconsistent {
                chunks: self.chunks.len(),
                chunk_bytes: self.chunk_bytes,
                size: self.size,
            })
        }
    }

    /// Byte range of chunk `i` in the archive.
    pub fn chunk_range(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.chunk_bytes;
        let len = self.chunk_bytes.min(self.size.saturating_sub(start));
        (start, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn chunks_cover_the_file_and_digest_it() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let a = ArchiveRef::of_file(f.path(), 1000).unwrap();
        assert_eq!(a.size, 2500);
        assert_eq!(a.chunks.len(), 3);
        assert_eq!(a.digest, Digest::of(&data));
        assert_eq!(a.chunks[2], Digest::of(&data[2000..]));
        assert_eq!(a.chunk_range(2), (2000, 500));
        let exact = ArchiveRef::of_file(f.path(), 500).unwrap();
        assert_eq!(exact.chunks.len(), 5);
    }

    #[test]
    fn inconsistent_lists_are_refused() {
        let a = ArchiveRef {
            digest: Digest::of(b""),
            size: 10 << 20,
            chunk_bytes: 8 << 20,
            chunks: vec![Digest::of(b"")],
        };
        assert!(matches!(a.check(), Err(ArchiveError::Inconsistent { .. })));
        let huge = ArchiveRef {
            size: 1 << 40,
            ..a.clone()
        };
        assert!(matches!(huge.check(), Err(ArchiveError::TooLarge { .. })));
        let zero = ArchiveRef {
            chunk_bytes: 0,
            ..a
        };
        assert!(zero.check().is_err());
    }

    #[test]
    fn image_ids_parse() {
        let r = ImageRef {
            name: "x".into(),
            id: format!("sha256:{}", Digest::of(b"c").to_hex()),
            archive: None,
        };
        assert_eq!(r.id_digest(), Some(Digest::of(b"c")));
        let bad = ImageRef {
            id: "busybox".into(),
            ..r
        };
        assert_eq!(bad.id_digest(), None);
    }
}
