//! Sealed buckets: zstd, then XChaCha20-Poly1305 in the STREAM construction.
//!
//! A sealed bucket is a 24-byte header (`TMRB`, a version byte, the 19-byte
//! STREAM nonce prefix) followed by chunks of 64 KiB of compressed plaintext
//! plus a 16-byte tag. The STREAM construction (aead-stream's `EncryptorBE32`)
//! puts a chunk counter and a last-chunk flag into each nonce, so chunks cannot
//! be reordered and a truncated stream fails at its new end. The associated
//! data of every chunk binds the job id, the bucket id and the chunk index, so a
//! chunk or a whole bucket moved to another bucket or job fails too. Each bucket
//! has its own random key, which the data layer never sees.
//!
//! [`SealWriter`]/[`OpenReader`] do the encryption alone; [`BucketWriter`] and
//! [`BucketReader`] add zstd and a SHA-256 of the plaintext, which is what the
//! roles use.

use crate::encoding::{B64, Digest, Hasher};
use crate::ids::{BucketId, JobId};
use aead_stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// Authentication tag bytes per chunk.
pub const TAG: usize = 16;
const MAGIC: &[u8; 4] = b"TMRB";
const VERSION: u8 = 1;
const NONCE_PREFIX: usize = 19;
/// Header bytes before the first chunk.
pub const HEADER: usize = MAGIC.len() + 1 + NONCE_PREFIX;

/// A bucket's symmetric key. Debug output never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketKey(pub B64<32>);

impl BucketKey {
    pub fn random() -> Self {
        BucketKey(B64(crate::random::bytes::<32>()))
    }
}

impl std::fmt::Debug for BucketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BucketKey(..)")
    }
}

/// Why a sealed bucket could not be opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    #[error("bucket {bucket} is not a tormr sealed bucket (bad header)")]
    BadHeader { bucket: String },
    #[error(
        "bucket {bucket} uses sealed-bucket format version {version}; this tormr reads version {VERSION}: upgrade tormr"
    )]
    UnknownVersion { bucket: String, version: u8 },
    #[error(
        "bucket {bucket} chunk {chunk} failed authentication: wrong key, a chunk moved from another bucket or job, reordered or tampered data, or a truncated stream"
    )]
    Authentication { bucket: String, chunk: u64 },
    #[error("bucket {bucket} ends in the middle of a chunk or before its last chunk (truncated)")]
    Truncated { bucket: String },
    #[error("bucket {bucket} has data after its last chunk")]
    TrailingData { bucket: String },
    #[error("bucket {bucket} is too long to seal")]
    TooLong { bucket: String },
}

impl From<SealError> for io::Error {
    fn from(e: SealError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Finds a [`SealError`] inside an I/O error, if that is what it was.
pub fn seal_error(e: &io::Error) -> Option<&SealError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<SealError>())
}

/// What each chunk's associated data binds.
#[derive(Clone)]
struct Binding {
    prefix: Vec<u8>,
    bucket: String,
}

impl Binding {
    fn new(job: &JobId, bucket: &BucketId) -> Self {
        let mut prefix = b"tormr/bucket/v1".to_vec();
        for part in [job.as_str(), bucket.as_str()] {
            // Length prefixes keep ("ab","c") and ("a","bc") apart.
            prefix.extend_from_slice(&(part.len() as u16).to_be_bytes());
            prefix.extend_from_slice(part.as_bytes());
        }
        Binding {
            prefix,
            bucket: bucket.to_string(),
        }
    }

    fn aad(&self, chunk: u64) -> Vec<u8> {
        let mut aad = self.prefix.clone();
        aad.extend_from_slice(&chunk.to_be_bytes());
        aad
    }
}

/// Encrypts a byte stream into a sealed bucket written to `W`.
pub struct SealWriter<W: Write> {
    inner: W,
    encryptor: Option<EncryptorBE32<XChaCha20Poly1305>>,
    binding: Binding,
    buf: Vec<u8>,
    chunk: u64,
    header_written: bool,
    nonce_prefix: [u8; NONCE_PREFIX],
    sealed_bytes: u64,
}

impl<W: Write> SealWriter<W> {
    pub fn new(inner: W, key: &BucketKey, job: &JobId, bucket: &BucketId) -> Self {
        let nonce_prefix = crate::random::bytes::<NONCE_PREFIX>();
        let aead = XChaCha20Poly1305::new(&key.0.0.into());
        let encryptor = EncryptorBE32::from_aead(aead, &nonce_prefix.into());
        SealWriter {
            inner,
            encryptor: Some(encryptor),
            binding: Binding::new(job, bucket),
            buf: Vec::with_capacity(CHUNK + TAG),
            chunk: 0,
            header_written: false,
            nonce_prefix,
            sealed_bytes: 0,
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            let mut header = Vec::with_capacity(HEADER);
            header.extend_from_slice(MAGIC);
            header.push(VERSION);
            header.extend_from_slice(&self.nonce_prefix);
            self.inner.write_all(&header)?;
            self.sealed_bytes += HEADER as u64;
            self.header_written = true;
        }
        Ok(())
    }

    fn too_long(&self) -> io::Error {
        SealError::TooLong {
            bucket: self.binding.bucket.clone(),
        }
        .into()
    }

    /// Seals the full buffer as a non-final chunk.
    fn flush_chunk(&mut self) -> io::Result<()> {
        self.write_header()?;
        let aad = self.binding.aad(self.chunk);
        let encryptor = self
            .encryptor
            .as_mut()
            .ok_or_else(|| io::Error::other("sealed bucket already finished"))?;
        encryptor
            .encrypt_next_in_place(&aad, &mut self.buf)
            .map_err(|_| self.too_long())?;
        self.inner.write_all(&self.buf)?;
        self.sealed_bytes += self.buf.len() as u64;
        self.buf.clear();
        self.chunk += 1;
        Ok(())
    }

    /// Seals what is buffered as the final chunk and returns the inner writer
    /// and the number of sealed bytes written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.write_header()?;
        let aad = self.binding.aad(self.chunk);
        let encryptor = self
            .encryptor
            .take()
            .ok_or_else(|| io::Error::other("sealed bucket already finished"))?;
        encryptor
            .encrypt_last_in_place(&aad, &mut self.buf)
            .map_err(|_| self.too_long())?;
        self.inner.write_all(&self.buf)?;
        self.sealed_bytes += self.buf.len() as u64;
        self.inner.flush()?;
        Ok((self.inner, self.sealed_bytes))
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is sealed only once more data arrives, because only then
        // is it known not to be the last chunk.
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        let take = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts a sealed bucket read from `R`, failing on any tampering.
pub struct OpenReader<R: Read> {
    inner: R,
    key: [u8; 32],
    decryptor: Option<DecryptorBE32<XChaCha20Poly1305>>,
    binding: Binding,
    /// Ciphertext read ahead but not yet decrypted.
    pending: Vec<u8>,
    /// Decrypted plaintext not yet handed out.
    plain: Vec<u8>,
    pos: usize,
    chunk: u64,
    started: bool,
    finished: bool,
    eof: bool,
}

impl<R: Read> OpenReader<R> {
    pub fn new(inner: R, key: &BucketKey, job: &JobId, bucket: &BucketId) -> Self {
        OpenReader {
            inner,
            key: key.0.0,
            decryptor: None,
            binding: Binding::new(job, bucket),
            pending: Vec::with_capacity(2 * (CHUNK + TAG)),
            plain: Vec::new(),
            pos: 0,
            chunk: 0,
            started: false,
            finished: false,
            eof: false,
        }
    }

    fn err(&self, make: impl FnOnce(String) -> SealError) -> io::Error {
        make(self.binding.bucket.clone()).into()
    }

    /// Reads from the inner stream until `want` bytes are pending or it ends.
    fn fill_pending(&mut self, want: usize) -> io::Result<()> {
        let mut scratch = [0u8; 16 * 1024];
        while self.pending.len() < want && !self.eof {
            let room = (want - self.pending.len()).min(scratch.len());
            match self.inner.read(&mut scratch[..room]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.pending.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn start(&mut self) -> io::Result<()> {
        self.fill_pending(HEADER)?;
        if self.pending.len() < HEADER || &self.pending[..4] != MAGIC {
            return Err(self.err(|bucket| SealError::BadHeader { bucket }));
        }
        if self.pending[4] != VERSION {
            let version = self.pending[4];
            return Err(self.err(|bucket| SealError::UnknownVersion { bucket, version }));
        }
        let mut prefix = [0u8; NONCE_PREFIX];
        prefix.copy_from_slice(&self.pending[5..HEADER]);
        self.pending.drain(..HEADER);
        let aead = XChaCha20Poly1305::new(&self.key.into());
        self.decryptor = Some(DecryptorBE32::from_aead(aead, &prefix.into()));
        self.started = true;
        Ok(())
    }

    /// Decrypts the next chunk into `plain`.
    fn next_chunk(&mut self) -> io::Result<()> {
        // One byte beyond a full chunk tells whether this chunk is the last.
        self.fill_pending(CHUNK + TAG + 1)?;
        let chunk = self.chunk;
        let aad = self.binding.aad(chunk);
        let auth_err = |s: &Self| s.err(|bucket| SealError::Authentication { bucket, chunk });
        if self.pending.len() > CHUNK + TAG {
            let mut body: Vec<u8> = self.pending.drain(..CHUNK + TAG).collect();
            let dec = self
                .decryptor
                .as_mut()
                .ok_or_else(|| io::Error::other("bucket reader misused"))?;
            if dec.decrypt_next_in_place(&aad, &mut body).is_err() {
                return Err(auth_err(self));
            }
            self.plain = body;
        } else {
            if self.pending.len() < TAG {
                return Err(self.err(|bucket| SealError::Truncated { bucket }));
            }
            let mut body = std::mem::take(&mut self.pending);
            let dec = self
                .decryptor
                .take()
                .ok_or_else(|| io::Error::other("bucket reader misused"))?;
            if dec.decrypt_last_in_place(&aad, &mut body).is_err() {
                return Err(auth_err(self));
            }
            self.plain = body;
            self.finished = true;
        }
        self.pos = 0;
        self.chunk += 1;
        Ok(())
    }

    /// Whether the authenticated last chunk has been read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            self.start()?;
        }
        while self.pos == self.plain.len() {
            if self.finished {
                self.fill_pending(1)?;
                if !self.pending.is_empty() {
                    return Err(self.err(|bucket| SealError::TrailingData { bucket }));
                }
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What sealing a bucket produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealSummary {
    /// Plaintext bytes before compression.
    pub plain_bytes: u64,
    /// SHA-256 of the plaintext: what verification compares. Absent for
    /// buckets sealed without hashing (the owner's input buckets).
    pub plain_digest: Option<Digest>,
    /// Bytes of the sealed bucket (what the data layer stores).
    pub sealed_bytes: u64,
}

/// Compresses and seals plaintext, hashing it on the way unless told not to.
pub struct BucketWriter<W: Write> {
    seal: SealWriter<W>,
    compressor: zstd::bulk::Compressor<'static>,
    /// Plaintext waiting to be compressed as one frame.
    frame: Vec<u8>,
    /// Reused output buffer for compressed frames.
    compressed: Vec<u8>,
    hasher: Option<Hasher>,
    plain_bytes: u64,
}

/// Plaintext per zstd frame. Independent frames from one contiguous buffer
/// keep zstd on its fast path (a streaming encoder's wrapping window is ~10%
/// slower) at the same ratio; a multi-frame stream decodes like any other.
const FRAME: usize = 1 << 20;

/// The zstd level for buckets: fast enough to keep up with a mapper, and text
/// still shrinks two- to threefold.
pub const DEFAULT_LEVEL: i32 = 1;

impl<W: Write> BucketWriter<W> {
    pub fn new(inner: W, key: &BucketKey, job: &JobId, bucket: &BucketId) -> io::Result<Self> {
        Self::with_level(inner, key, job, bucket, DEFAULT_LEVEL)
    }

    pub fn with_level(
        inner: W,
        key: &BucketKey,
        job: &JobId,
        bucket: &BucketId,
        level: i32,
    ) -> io::Result<Self> {
        Ok(BucketWriter {
            seal: SealWriter::new(inner, key, job, bucket),
            compressor: zstd::bulk::Compressor::new(level)?,
            frame: Vec::with_capacity(FRAME),
            compressed: Vec::with_capacity(zstd::zstd_safe::compress_bound(FRAME)),
            hasher: Some(Hasher::new()),
            plain_bytes: 0,
        })
    }

    /// The same writer without hashing the plaintext (nobody will compare it).
    pub fn without_digest(mut self) -> Self {
        self.hasher = None;
        self
    }

    /// Plaintext bytes written so far.
    pub fn plain_bytes(&self) -> u64 {
        self.plain_bytes
    }

    /// Compresses what is buffered as one frame and seals it.
    fn flush_frame(&mut self) -> io::Result<()> {
        if self.frame.is_empty() {
            return Ok(());
        }
        self.compressed.clear();
        self.compressor
            .compress_to_buffer(&self.frame, &mut self.compressed)?;
        self.seal.write_all(&self.compressed)?;
        self.frame.clear();
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<(W, SealSummary)> {
        self.flush_frame()?;
        if self.plain_bytes == 0 {
            // An empty bucket is still one valid (empty) zstd frame.
            self.compressed.clear();
            self.compressor
                .compress_to_buffer(&[], &mut self.compressed)?;
            self.seal.write_all(&self.compressed)?;
        }
        let (inner, sealed_bytes) = self.seal.finish()?;
        Ok((
            inner,
            SealSummary {
                plain_bytes: self.plain_bytes,
                plain_digest: self.hasher.map(Hasher::finish),
                sealed_bytes,
            },
        ))
    }
}

impl<W: Write> Write for BucketWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(FRAME - self.frame.len());
        self.frame.extend_from_slice(&data[..n]);
        if let Some(h) = &mut self.hasher {
            h.update(&data[..n]);
        }
        self.plain_bytes += n as u64;
        if self.frame.len() == FRAME {
            self.flush_frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens, authenticates and decompresses a sealed bucket.
///
/// The AEAD already proves the plaintext is what the writer sealed; hashing it
/// again ([`BucketReader::with_digest`]) is only for comparing with a digest a
/// worker reported (the owner's output check, verification).
pub struct BucketReader<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, io::BufReader<OpenReader<R>>>,
    hasher: Option<Hasher>,
    plain_bytes: u64,
    done: bool,
}

impl<R: Read> BucketReader<R> {
    pub fn new(inner: R, key: &BucketKey, job: &JobId, bucket: &BucketId) -> io::Result<Self> {
        let open = OpenReader::new(inner, key, job, bucket);
        Ok(BucketReader {
            decoder: zstd::stream::read::Decoder::new(open)?,
            hasher: None,
            plain_bytes: 0,
            done: false,
        })
    }

    /// A reader that also computes the plaintext's SHA-256.
    pub fn with_digest(
        inner: R,
        key: &BucketKey,
        job: &JobId,
        bucket: &BucketId,
    ) -> io::Result<Self> {
        let mut r = Self::new(inner, key, job, bucket)?;
        r.hasher = Some(Hasher::new());
        Ok(r)
    }

    /// Plaintext bytes read so far.
    pub fn plain_bytes(&self) -> u64 {
        self.plain_bytes
    }

    /// SHA-256 of all plaintext read (for readers made [`with_digest`](Self::with_digest));
    /// meaningful once the reader hit its end.
    pub fn digest(&self) -> Option<Digest> {
        self.hasher.clone().map(Hasher::finish)
    }

    /// Makes sure the sealed stream was read to its authenticated last chunk,
    /// even if zstd stopped asking for bytes at the end of its frame.
    fn drain_to_end(&mut self) -> io::Result<()> {
        let open = self.decoder.get_mut();
        let mut rest = Vec::new();
        open.read_to_end(&mut rest)?;
        if !rest.is_empty() {
            let bucket = open.get_ref().binding.bucket.clone();
            return Err(SealError::TrailingData { bucket }.into());
        }
        if !open.get_ref().is_finished() {
            let bucket = open.get_ref().binding.bucket.clone();
            return Err(SealError::Truncated { bucket }.into());
        }
        Ok(())
    }
}

impl<R: Read> Read for BucketReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.decoder.read(out)?;
        if n == 0 {
            self.drain_to_end()?;
            self.done = true;
            return Ok(0);
        }
        if let Some(h) = &mut self.hasher {
            h.update(&out[..n]);
        }
        self.plain_bytes += n as u64;
        Ok(n)
    }
}

/// Seals `plain` in memory (tests and small control payloads).
pub fn seal_bytes(
    plain: &[u8],
    key: &BucketKey,
    job: &JobId,
    bucket: &BucketId,
) -> io::Result<(Vec<u8>, SealSummary)> {
    let mut w = BucketWriter::new(Vec::new(), key, job, bucket)?;
    w.write_all(plain)?;
    w.finish()
}

/// Opens a sealed bucket held in memory.
pub fn open_bytes(
    sealed: &[u8],
    key: &BucketKey,
    job: &JobId,
    bucket: &BucketId,
) -> io::Result<Vec<u8>> {
    let mut r = BucketReader::new(sealed, key, job, bucket)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (JobId, BucketId) {
        (
            JobId::parse("job-test").unwrap(),
            BucketId::parse("in-00001").unwrap(),
        )
    }

    /// Pseudo-random, poorly compressible data so the sealed form spans chunks.
    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn raw_seal(plain: &[u8], key: &BucketKey, job: &JobId, bucket: &BucketId) -> Vec<u8> {
        let mut w = SealWriter::new(Vec::new(), key, job, bucket);
        w.write_all(plain).unwrap();
        w.finish().unwrap().0
    }

    fn raw_open(
        sealed: &[u8],
        key: &BucketKey,
        job: &JobId,
        bucket: &BucketId,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        OpenReader::new(sealed, key, job, bucket).read_to_end(&mut out)?;
        Ok(out)
    }

    fn expect_seal_error(result: io::Result<Vec<u8>>) -> SealError {
        let err = result.expect_err("tampering must fail");
        seal_error(&err)
            .cloned()
            .unwrap_or_else(|| panic!("not a seal error: {err}"))
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let plain = noise(len);
            let sealed = raw_seal(&plain, &key, &job, &bucket);
            let chunks = len.div_ceil(CHUNK).max(1);
            assert_eq!(sealed.len(), HEADER + len + chunks * TAG, "len {len}");
            assert_eq!(
                raw_open(&sealed, &key, &job, &bucket).unwrap(),
                plain,
                "len {len}"
            );
        }
    }

    #[test]
    fn compressed_bucket_round_trips_with_digest() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        let plain: Vec<u8> = b"the quick brown fox\n".repeat(20_000);
        let (sealed, summary) = seal_bytes(&plain, &key, &job, &bucket).unwrap();
        assert!(sealed.len() < plain.len() / 10, "text should compress");
        assert_eq!(summary.plain_bytes, plain.len() as u64);
        assert_eq!(summary.plain_digest, Some(Digest::of(&plain)));
        assert_eq!(summary.sealed_bytes, sealed.len() as u64);
        let mut r = BucketReader::with_digest(&sealed[..], &key, &job, &bucket).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, plain);
        assert_eq!(r.digest(), summary.plain_digest);
        assert!(
            !sealed.windows(9).any(|w| w == b"quick bro"),
            "plaintext visible in sealed bucket"
        );
    }

    #[test]
    fn tampered_chunk_fails() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        let mut sealed = raw_seal(&noise(3 * CHUNK), &key, &job, &bucket);
        sealed[HEADER + CHUNK + TAG + 100] ^= 1; // inside chunk 1
        assert_eq!(
            expect_seal_error(raw_open(&sealed, &key, &job, &bucket)),
            SealError::Authentication {
                bucket: bucket.to_string(),
                chunk: 1
            }
        );
    }

    #[test]
    fn truncated_stream_fails() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        let sealed = raw_seal(&noise(3 * CHUNK + 10), &key, &job, &bucket);
        // Cut exactly at a chunk boundary: the remaining chunk was not sealed as last.
        let at_boundary = &sealed[..HEADER + 2 * (CHUNK + TAG)];
        assert!(matches!(
            expect_seal_error(raw_open(at_boundary, &key, &job, &bucket)),
            SealError::Authentication { chunk: 1, .. }
        ));
        // Cut mid-chunk.
        let mid = &sealed[..HEADER + CHUNK + TAG + 5];
        assert!(matches!(
            expect_seal_error(raw_open(mid, &key, &job, &bucket)),
            SealError::Truncated { .. } | SealError::Authentication { .. }
        ));
        // Only the header.
        assert!(matches!(
            expect_seal_error(raw_open(&sealed[..HEADER], &key, &job, &bucket)),
            SealError::Truncated { .. }
        ));
        // Not even a header.
        assert!(matches!(
            expect_seal_error(raw_open(&sealed[..3], &key, &job, &bucket)),
            SealError::BadHeader { .. }
        ));
    }

    #[test]
    fn compressed_truncation_fails_too() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        let (sealed, _) = seal_bytes(&noise(5 * CHUNK), &key, &job, &bucket).unwrap();
        let cut = &sealed[..HEADER + 2 * (CHUNK + TAG)];
        assert!(open_bytes(cut, &key, &job, &bucket).is_err());
    }

    #[test]
    fn reordered_chunks_fail() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        let sealed = raw_seal(&noise(3 * CHUNK + 10), &key, &job, &bucket);
        let c = CHUNK + TAG;
        let mut swapped = sealed[..HEADER].to_vec();
        swapped.extend_from_slice(&sealed[HEADER + c..HEADER + 2 * c]);
        swapped.extend_from_slice(&sealed[HEADER..HEADER + c]);
        swapped.extend_from_slice(&sealed[HEADER + 2 * c..]);
        assert_eq!(
            expect_seal_error(raw_open(&swapped, &key, &job, &bucket)),
            SealError::Authentication {
                bucket: bucket.to_string(),
                chunk: 0
            }
        );
    }

    #[test]
    fn bucket_swapped_for_another_fails() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        let sealed = raw_seal(b"payload for in-00001", &key, &job, &bucket);
        // Same key, presented as another bucket of the same job.
        let other = BucketId::parse("in-00002").unwrap();
        assert!(matches!(
            expect_seal_error(raw_open(&sealed, &key, &job, &other)),
            SealError::Authentication { chunk: 0, .. }
        ));
        // Same key and bucket name, but another job.
        let other_job = JobId::parse("job-other").unwrap();
        assert!(matches!(
            expect_seal_error(raw_open(&sealed, &key, &other_job, &bucket)),
            SealError::Authentication { chunk: 0, .. }
        ));
    }

    #[test]
    fn wrong_key_fails() {
        let (job, bucket) = ids();
        let sealed = raw_seal(b"secret", &BucketKey::random(), &job, &bucket);
        let err = expect_seal_error(raw_open(&sealed, &BucketKey::random(), &job, &bucket));
        assert_eq!(
            err,
            SealError::Authentication {
                bucket: bucket.to_string(),
                chunk: 0
            }
        );
        assert!(err.to_string().contains("wrong key"));
    }

    #[test]
    fn trailing_data_fails() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        let mut sealed = raw_seal(b"abc", &key, &job, &bucket);
        sealed.extend_from_slice(b"extra");
        assert!(raw_open(&sealed, &key, &job, &bucket).is_err());
    }

    #[test]
    fn unknown_version_is_named() {
        let (job, bucket) = ids();
        let key = BucketKey::random();
        let mut sealed = raw_seal(b"abc", &key, &job, &bucket);
        sealed[4] = 9;
        assert!(matches!(
            expect_seal_error(raw_open(&sealed, &key, &job, &bucket)),
            SealError::UnknownVersion { version: 9, .. }
        ));
    }

    #[test]
    fn key_debug_is_redacted() {
        assert_eq!(format!("{:?}", BucketKey::random()), "BucketKey(..)");
    }
}
