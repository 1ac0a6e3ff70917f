//! The map side of the shuffle: every output line goes to its partition and
//! into the sort buffer; a full buffer is sorted (combined, if the step has a
//! combiner) and spilled to disk as one run; at the end each partition's runs
//! are merged into one sealed bucket.
//!
//! The buffer is one byte arena plus a compact record per line (partition, an
//! 8-byte prefix of the line for fast comparisons, offset, length), and its
//! size counts both, so memory stays at the configured bound whatever the input.

use super::merge::Merger;
use crate::canonical::{self, Digesting};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tormr_core::ids::JobId;
use tormr_core::partition::KeySpec;
use tormr_core::seal::BucketWriter;
use tormr_core::wire::job::{OutputBucket, WrittenBucket};

#[derive(Clone, Copy)]
struct Rec {
    part: u32,
    prefix: u64,
    off: u32,
    len: u32,
}

const REC_BYTES: usize = std::mem::size_of::<Rec>();

/// Writes one partition's sorted lines, newline-terminated, to a sink.
pub type WriteSorted<'a> = dyn FnMut(&mut dyn Write) -> io::Result<()> + Send + 'a;

/// Runs the step's combiner over one partition's sorted lines (written by
/// `input`), returning its output (lines, any order).
pub trait Combiner: Send {
    fn combine(&mut self, partition: u32, input: &mut WriteSorted<'_>) -> io::Result<Vec<u8>>;
}

/// A spilled run: sorted lines, partition after partition.
struct Run {
    path: PathBuf,
    /// Byte range of each partition.
    parts: Vec<(u64, u64)>,
}

/// Tallies for the task's counters.
#[derive(Debug, Default, Clone)]
pub struct ShuffleCounts {
    pub output_records: u64,
    pub output_bytes: u64,
    pub spilled_records: u64,
    pub spills: u64,
    pub combine_input_records: u64,
    pub combine_output_records: u64,
}

pub struct MapCollector<'a> {
    keys: KeySpec,
    partitions: u32,
    limit: usize,
    data: Vec<u8>,
    recs: Vec<Rec>,
    runs: Vec<Run>,
    spill_dir: PathBuf,
    combiner: Option<&'a mut dyn Combiner>,
    pub counts: ShuffleCounts,
}

fn prefix(line: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = line.len().min(8);
    p[..n].copy_from_slice(&line[..n]);
    u64::from_be_bytes(p)
}

impl<'a> MapCollector<'a> {
    /// `limit` bounds the buffer (bytes of lines plus per-line records); it
    /// cannot exceed what 32-bit offsets address.
    pub fn new(
        keys: KeySpec,
        partitions: u32,
        limit: usize,
        spill_dir: &Path,
        combiner: Option<&'a mut dyn Combiner>,
    ) -> Self {
        let limit = limit.clamp(64 * 1024, u32::MAX as usize / 2);
        MapCollector {
            keys,
            partitions: partitions.max(1),
            limit,
            // Reserved (not touched) up front: growing by doubling would copy
            // into fresh pages and briefly hold twice the buffer.
            data: Vec::with_capacity(limit),
            recs: Vec::with_capacity(limit / REC_BYTES),
            runs: Vec::new(),
            spill_dir: spill_dir.to_owned(),
            combiner,
            counts: ShuffleCounts::default(),
        }
    }

    fn used(&self) -> usize {
        self.data.len() + self.recs.len() * REC_BYTES
    }

    /// Adds one output line (without its newline).
    pub fn push(&mut self, line: &[u8]) -> io::Result<()> {
        if self.used() + line.len() + REC_BYTES > self.limit && !self.recs.is_empty() {
            self.spill()?;
        }
        let part = self.keys.partition(line, self.partitions);
        let off = self.data.len();
        self.data.extend_from_slice(line);
        self.recs.push(Rec {
            part,
            prefix: prefix(line),
            off: off as u32,
            len: line.len() as u32,
        });
        self.counts.output_records += 1;
        self.counts.output_bytes += line.len() as u64 + 1;
        Ok(())
    }

    /// Reads every line of `reader` (the mapper's stdout).
    pub fn collect(&mut self, reader: &mut dyn BufRead) -> io::Result<()> {
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let len = buf.len();
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', buf) {
                if carry.is_empty() {
                    self.push(trim_cr(&buf[start..nl]))?;
                } else {
                    carry.extend_from_slice(&buf[start..nl]);
                    let line = std::mem::take(&mut carry);
                    self.push(trim_cr(&line))?;
                }
                start = nl + 1;
            }
            carry.extend_from_slice(&buf[start..]);
            reader.consume(len);
        }
        if !carry.is_empty() {
            self.push(trim_cr(&carry))?;
        }
        Ok(())
    }

    fn sort(&mut self) {
        let data = &self.data;
        self.recs.sort_unstable_by(|a, b| {
            (a.part, a.prefix).cmp(&(b.part, b.prefix)).then_with(|| {
                data[a.off as usize..(a.off + a.len) as usize]
                    .cmp(&data[b.off as usize..(b.off + b.len) as usize])
            })
        });
    }

    /// Sorts the buffer and writes it partition by partition into `sink`,
    /// running the combiner per partition, then empties the buffer.
    fn write_sorted(&mut self, sink: &mut dyn PartitionSink) -> io::Result<()> {
        self.sort();
        let mut i = 0;
        let mut recs = std::mem::take(&mut self.recs);
        for p in 0..self.partitions {
            let begin = i;
            while i < recs.len() && recs[i].part == p {
                i += 1;
            }
            let group = &recs[begin..i];
            let out = sink.begin(p)?;
            if let Some(combiner) = self.combiner.as_deref_mut() {
                if !group.is_empty() {
                    self.counts.combine_input_records += group.len() as u64;
                    let data = &self.data;
                    let mut write_group = |w: &mut dyn Write| -> io::Result<()> {
                        for r in group {
                            w.write_all(&data[r.off as usize..(r.off + r.len) as usize])?;
                            w.write_all(b"\n")?;
                        }
                        Ok(())
                    };
                    let combined = combiner.combine(p, &mut write_group)?;
                    let mut out_lines: Vec<&[u8]> =
                        combined.split(|b| *b == b'\n').map(trim_cr).collect();
                    if combined.ends_with(b"\n") || combined.is_empty() {
                        out_lines.pop();
                    }
                    out_lines.sort_unstable();
                    self.counts.combine_output_records += out_lines.len() as u64;
                    for l in out_lines {
                        out.write_all(l)?;
                        out.write_all(b"\n")?;
                    }
                }
            } else {
                for r in group {
                    out.write_all(&self.data[r.off as usize..(r.off + r.len) as usize])?;
                    out.write_all(b"\n")?;
                }
            }
            sink.end(p)?;
        }
        self.data.clear();
        // Keep the reserved capacity for the next fill.
        recs.clear();
        self.recs = recs;
        Ok(())
    }

    /// Sorts the buffer and writes it to disk as a run.
    fn spill(&mut self) -> io::Result<()> {
        let path = self.spill_dir.join(format!("spill-{:04}", self.runs.len()));
        let mut sink = RunSink {
            out: CountingWriter::new(BufWriter::with_capacity(1 << 20, File::create(&path)?)),
            parts: Vec::new(),
            start: 0,
        };
        self.counts.spilled_records += self.recs.len() as u64;
        self.write_sorted(&mut sink)?;
        sink.out.inner.flush()?;
        self.counts.spills += 1;
        self.runs.push(Run {
            path,
            parts: sink.parts,
        });
        Ok(())
    }

    /// Seals one bucket per partition as `to` says.
    pub fn finish(
        mut self,
        outputs: &[OutputBucket],
        to: SealTo<'_>,
    ) -> io::Result<(Vec<(WrittenBucket, PathBuf)>, ShuffleCounts)> {
        if outputs.len() != self.partitions as usize {
            return Err(io::Error::other(format!(
                "{} output buckets for {} partitions",
                outputs.len(),
                self.partitions
            )));
        }
        if !self.runs.is_empty() && !self.recs.is_empty() {
            self.spill()?;
        }
        let mut written = Vec::with_capacity(outputs.len());
        if self.runs.is_empty() {
            // Everything fit in memory: seal each partition straight from the buffer.
            let mut sink = SealSink {
                outputs,
                to,
                open: None,
                written: &mut written,
            };
            self.write_sorted(&mut sink)?;
        } else {
            for (p, out) in outputs.iter().enumerate() {
                let mut sources = Vec::with_capacity(self.runs.len());
                for run in &self.runs {
                    let (a, b) = run.parts[p];
                    let mut f = File::open(&run.path)?;
                    f.seek(SeekFrom::Start(a))?;
                    sources.push(BufReader::with_capacity(256 * 1024, f.take(b - a)));
                }
                let mut merger = Merger::new(sources)?;
                written.push(seal_with(out, to, |w| merger.write_to(w))?);
            }
            for run in &self.runs {
                let _ = std::fs::remove_file(&run.path);
            }
        }
        Ok((written, self.counts))
    }
}

/// Where sorted partitions go: one after another, each opened and closed.
trait PartitionSink {
    fn begin(&mut self, partition: u32) -> io::Result<&mut dyn Write>;
    fn end(&mut self, partition: u32) -> io::Result<()>;
}

/// A writer that counts bytes (so a run knows its partitions' offsets).
struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    fn new(inner: W) -> Self {
        CountingWriter { inner, count: 0 }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Partitions one after another in a spill file, with their byte ranges.
struct RunSink<W: Write> {
    out: CountingWriter<W>,
    parts: Vec<(u64, u64)>,
    start: u64,
}

impl<W: Write> PartitionSink for RunSink<W> {
    fn begin(&mut self, _partition: u32) -> io::Result<&mut dyn Write> {
        self.start = self.out.count;
        Ok(&mut self.out)
    }

    fn end(&mut self, _partition: u32) -> io::Result<()> {
        self.parts.push((self.start, self.out.count));
        Ok(())
    }
}

/// A writer that counts the newlines through it (a partition's records).
type OpenBucket = (Digesting<BufWriter<BucketWriter<BufWriter<File>>>>, PathBuf);

/// Where and how output buckets are sealed: the job they belong to, the
/// folder they wait in before upload, the zstd level.
#[derive(Clone, Copy, Debug)]
pub struct SealTo<'a> {
    pub job: &'a JobId,
    pub staging: &'a Path,
    pub level: i32,
}

impl SealTo<'_> {
    fn open(&self, out: &OutputBucket) -> io::Result<OpenBucket> {
        let path = self.staging.join(format!("{}.sealed", out.bucket));
        let sink = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let w = BucketWriter::with_level(sink, &out.key, self.job, &out.bucket, self.level)?;
        Ok((
            Digesting::new(BufWriter::with_capacity(256 * 1024, w)),
            path,
        ))
    }

    /// Seals what went through `w` and describes the bucket for the report.
    fn finish(
        &self,
        out: &OutputBucket,
        w: Digesting<BufWriter<BucketWriter<BufWriter<File>>>>,
        path: PathBuf,
        records: u64,
    ) -> io::Result<(WrittenBucket, PathBuf)> {
        let Digesting { inner, lines, .. } = w;
        let w = inner.into_inner().map_err(|e| e.into_error())?;
        let (mut sink, summary) = w.finish()?;
        sink.flush()?;
        drop(sink);
        let canonical_digest = match lines.finish() {
            Some(d) => Some(d),
            None => canonical::of_sealed_file(
                &path,
                &out.key,
                self.job,
                &out.bucket,
                summary.plain_bytes,
            )?,
        };
        Ok((
            WrittenBucket {
                partition: out.partition,
                bucket: out.bucket.clone(),
                summary,
                records,
                canonical_digest,
                receipt: None,
            },
            path,
        ))
    }
}

/// Each partition into its own sealed output bucket.
struct SealSink<'a> {
    outputs: &'a [OutputBucket],
    to: SealTo<'a>,
    open: Option<OpenBucket>,
    written: &'a mut Vec<(WrittenBucket, PathBuf)>,
}

impl PartitionSink for SealSink<'_> {
    fn begin(&mut self, partition: u32) -> io::Result<&mut dyn Write> {
        let open = self
            .open
            .insert(self.to.open(&self.outputs[partition as usize])?);
        Ok(&mut open.0)
    }

    fn end(&mut self, partition: u32) -> io::Result<()> {
        let Some((w, path)) = self.open.take() else {
            return Ok(());
        };
        let records = w.records;
        let written = self
            .to
            .finish(&self.outputs[partition as usize], w, path, records)?;
        self.written.push(written);
        Ok(())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Seals what `fill` writes as one output bucket; `fill` returns the line count.
pub fn seal_with(
    out: &OutputBucket,
    to: SealTo<'_>,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<u64>,
) -> io::Result<(WrittenBucket, PathBuf)> {
    let (mut w, path) = to.open(out)?;
    let records = fill(&mut w)?;
    to.finish(out, w, path, records)
}

/// Copies `input` to `out`, counting lines (a last line without newline counts).
pub fn copy_lines(input: &mut dyn Read, out: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut records = 0u64;
    let mut last = b'\n';
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        records += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        last = buf[n - 1];
        out.write_all(&buf[..n])?;
    }
    if last != b'\n' {
        records += 1;
    }
    Ok(records)
}

/// Seals everything `input` yields as one output bucket.
pub fn seal(
    out: &OutputBucket,
    to: SealTo<'_>,
    input: &mut dyn Read,
) -> io::Result<(WrittenBucket, PathBuf)> {
    seal_with(out, to, |w| copy_lines(input, w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tormr_core::ids::BucketId;
    use tormr_core::seal::{BucketKey, open_bytes};

    fn outputs(n: u32) -> Vec<OutputBucket> {
        (0..n)
            .map(|p| OutputBucket {
                partition: p,
                bucket: BucketId::parse(&format!("t-p{p}")).unwrap(),
                key: BucketKey::random(),
                token: String::new(),
            })
            .collect()
    }

    fn open(out: &OutputBucket, path: &Path, job: &JobId) -> Vec<u8> {
        open_bytes(&std::fs::read(path).unwrap(), &out.key, job, &out.bucket).unwrap()
    }

    fn run(lines: &[&str], partitions: u32, limit: usize) -> (Vec<Vec<u8>>, ShuffleCounts) {
        let dir = tempfile::tempdir().unwrap();
        let job = JobId::parse("job-x").unwrap();
        let outs = outputs(partitions);
        let mut c = MapCollector::new(KeySpec::default(), partitions, limit, dir.path(), None);
        let text = lines.join("\n");
        c.collect(&mut text.as_bytes()).unwrap();
        let (written, counts) = c
            .finish(
                &outs,
                SealTo {
                    job: &job,
                    staging: dir.path(),
                    level: 1,
                },
            )
            .unwrap();
        (
            written
                .iter()
                .zip(&outs)
                .map(|((_, p), o)| open(o, p, &job))
                .collect(),
            counts,
        )
    }

    fn reference(lines: &[&str], partitions: u32) -> Vec<Vec<u8>> {
        let spec = KeySpec::default();
        let mut parts: Vec<Vec<&str>> = vec![Vec::new(); partitions as usize];
        for l in lines {
            parts[spec.partition(l.as_bytes(), partitions) as usize].push(l);
        }
        parts
            .into_iter()
            .map(|mut p| {
                p.sort();
                p.iter()
                    .flat_map(|l| format!("{l}\n").into_bytes())
                    .collect()
            })
            .collect()
    }

    fn words(n: usize) -> Vec<String> {
        let mut x = 12345u64;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                format!("w{}\t{}", (x >> 33) % 500, (x >> 20) % 7)
            })
            .collect()
    }

    #[test]
    fn in_memory_and_spilled_runs_give_the_same_sorted_partitions() {
        let owned = words(20_000);
        let lines: Vec<&str> = owned.iter().map(String::as_str).collect();
        let expected = reference(&lines, 3);
        let (mem, counts) = run(&lines, 3, 64 << 20);
        assert_eq!(counts.spills, 0);
        assert_eq!(mem, expected);
        let (spilled, counts) = run(&lines, 3, 64 * 1024);
        assert!(
            counts.spills > 3,
            "expected several spills, got {}",
            counts.spills
        );
        assert_eq!(spilled, expected);
        assert_eq!(counts.output_records, 20_000);
    }

    #[test]
    fn lines_without_tabs_binary_and_crlf_are_kept() {
        let lines = ["no tab here", "\u{1}\u{2}junk", "k\tv\r", "", "k\tv"];
        let (parts, _) = run(&lines, 1, 64 << 20);
        assert_eq!(parts[0], b"\n\x01\x02junk\nk\tv\nk\tv\nno tab here\n");
    }

    struct Summing;
    impl Combiner for Summing {
        fn combine(&mut self, _p: u32, input: &mut WriteSorted<'_>) -> io::Result<Vec<u8>> {
            let mut sorted = Vec::new();
            input(&mut sorted)?;
            let mut out = std::collections::BTreeMap::<Vec<u8>, u64>::new();
            for l in sorted.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let (k, v) = l.split_at(memchr::memchr(b'\t', l).unwrap());
                *out.entry(k.to_vec()).or_default() += std::str::from_utf8(&v[1..])
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
            // Unsorted on purpose: the collector must re-sort.
            Ok(out
                .into_iter()
                .rev()
                .flat_map(|(k, v)| [k, format!("\t{v}\n").into_bytes()].concat())
                .collect())
        }
    }

    #[test]
    fn combiner_output_is_resorted() {
        let dir = tempfile::tempdir().unwrap();
        let job = JobId::parse("job-x").unwrap();
        let outs = outputs(1);
        let mut comb = Summing;
        let mut c = MapCollector::new(KeySpec::default(), 1, 64 << 20, dir.path(), Some(&mut comb));
        c.collect(&mut &b"b\t1\na\t2\nb\t3\n"[..]).unwrap();
        let (written, counts) = c
            .finish(
                &outs,
                SealTo {
                    job: &job,
                    staging: dir.path(),
                    level: 1,
                },
            )
            .unwrap();
        assert_eq!(open(&outs[0], &written[0].1, &job), b"a\t2\nb\t4\n");
        assert_eq!(
            (counts.combine_input_records, counts.combine_output_records),
            (3, 2)
        );
        assert_eq!(written[0].0.records, 2);
    }
}
