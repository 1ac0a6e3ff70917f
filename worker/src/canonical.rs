//! The canonical digest of a task's output: SHA-256 over its lines sorted
//! bytewise, each ending in a newline. The job master compares these between
//! copies of a task run by different workers, so two honest copies agree even
//! when job code emits its lines in another order (a mapper walking a hash
//! map, say).
//!
//! Most outputs are already sorted (map partitions under the default whole-line
//! sort, reduce outputs keyed in order), so the digest is taken while the
//! output is written and costs one more hash pass. An output found unsorted is
//! read back from its sealed file and sorted in memory, if it is small enough.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use tormr_core::encoding::{Digest, Hasher};
use tormr_core::ids::{BucketId, JobId};
use tormr_core::seal::{BucketKey, BucketReader};

/// Outputs up to this many plaintext bytes are sorted in memory when they
/// were not written in order; larger ones are compared by plaintext digest.
pub const SORT_IN_MEMORY_BYTES: u64 = 256 << 20;

/// Hashes lines as they go by, while they stay in order.
#[derive(Default)]
pub struct LineDigest {
    hasher: Hasher,
    /// The current line so far (a line may span writes).
    partial: Vec<u8>,
    previous: Vec<u8>,
    started: bool,
    unsorted: bool,
}

impl LineDigest {
    pub fn feed(&mut self, mut buf: &[u8]) {
        if self.unsorted {
            return;
        }
        while let Some(i) = memchr::memchr(b'\n', buf) {
            self.partial.extend_from_slice(&buf[..i]);
            self.end_line();
            if self.unsorted {
                return;
            }
            buf = &buf[i + 1..];
        }
        self.partial.extend_from_slice(buf);
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.partial);
        if self.started && line < self.previous {
            self.unsorted = true;
            return;
        }
        self.hasher.update(&line);
        self.hasher.update(b"\n");
        self.previous = line;
        self.started = true;
    }

    /// The digest if every line came in order; `None` if they did not.
    pub fn finish(mut self) -> Option<Digest> {
        if !self.partial.is_empty() {
            self.end_line();
        }
        (!self.unsorted).then(|| self.hasher.finish())
    }
}

/// The canonical digest of `data`, sorting its lines.
pub fn of_unsorted(data: &[u8]) -> Digest {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if data.is_empty() || data.ends_with(b"\n") {
        lines.pop();
    }
    lines.sort_unstable();
    let mut hasher = Hasher::new();
    for line in lines {
        hasher.update(line);
        hasher.update(b"\n");
    }
    hasher.finish()
}

/// Reads a sealed output back and digests its sorted lines, if it is small
/// enough to sort in memory.
pub fn of_sealed_file(
    path: &Path,
    key: &BucketKey,
    job: &JobId,
    bucket: &BucketId,
    plain_bytes: u64,
) -> io::Result<Option<Digest>> {
    if plain_bytes > SORT_IN_MEMORY_BYTES {
        return Ok(None);
    }
    let file = BufReader::new(File::open(path)?);
    let mut reader = BucketReader::new(file, key, job, bucket)?;
    let mut data = Vec::with_capacity(plain_bytes as usize);
    reader.read_to_end(&mut data)?;
    Ok(Some(of_unsorted(&data)))
}

/// A writer that digests the lines passing through it.
pub struct Digesting<W: Write> {
    pub inner: W,
    pub lines: LineDigest,
    pub records: u64,
}

impl<W: Write> Digesting<W> {
    pub fn new(inner: W) -> Self {
        Digesting {
            inner,
            lines: LineDigest::default(),
            records: 0,
        }
    }
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.lines.feed(&buf[..n]);
        self.records += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(parts: &[&[u8]]) -> Option<Digest> {
        let mut d = LineDigest::default();
        for p in parts {
            d.feed(p);
        }
        d.finish()
    }

    #[test]
    fn sorted_output_is_digested_as_it_streams() {
        let whole = b"a\t1\nb\t2\nc\t3\n";
        assert_eq!(streamed(&[whole]), Some(of_unsorted(whole)));
        // Split anywhere, even mid-line, the digest is the same.
        assert_eq!(
            streamed(&[b"a\t1\nb", b"\t2\nc\t3\n"]),
            Some(of_unsorted(whole))
        );
        // A missing final newline is the same output.
        assert_eq!(streamed(&[b"a\t1\nb\t2\nc\t3"]), Some(of_unsorted(whole)));
    }

    #[test]
    fn order_does_not_matter_but_content_does() {
        assert_eq!(streamed(&[b"b\na\n"]), None, "unsorted is noticed");
        assert_eq!(of_unsorted(b"b\na\nc\n"), of_unsorted(b"a\nb\nc\n"));
        assert_ne!(of_unsorted(b"a\nb\n"), of_unsorted(b"a\nb\nb\n"));
        assert_ne!(of_unsorted(b"a\nb\n"), of_unsorted(b"a\nc\n"));
        assert_eq!(streamed(&[b""]), Some(of_unsorted(b"")));
    }
}
