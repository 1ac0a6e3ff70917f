//! One task attempt, start to finish on the worker's side: open the sealed
//! inputs, run the mapper or reducer over them, shuffle or seal the output.
//! Runs on a blocking thread; job code runs through the [`Executor`].

use crate::executor::{ExecSpec, Executor, Exit};
use crate::run::{Ran, run_filter};
use crate::shuffle::collector::{
    Combiner, MapCollector, SealTo, ShuffleCounts, WriteSorted, seal, seal_with,
};
use crate::shuffle::merge::Merger;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tormr_core::counters::{Counters, FRAMEWORK, TORMR};
use tormr_core::ids::{JobId, TaskKind};
use tormr_core::partition::KeySpec;
use tormr_core::seal::BucketReader;
use tormr_core::wire::job::{InputBucket, TaskAssignment, WrittenBucket};

/// Most sorted inputs merged at once; more are pre-merged in rounds, so a
/// reducer over thousands of maps keeps a bounded number of files open.
const FAN_IN: usize = 64;

/// Where and how a task runs.
pub struct TaskEnv {
    pub rt: Handle,
    pub executor: Arc<dyn Executor>,
    pub job: JobId,
    /// The attempt's working directory, with the job's files in it.
    pub workdir: PathBuf,
    /// The job's files (shared by its attempts, read-only).
    pub files: PathBuf,
    /// Scratch space: spills and `TMPDIR`.
    pub scratch: PathBuf,
    /// Where sealed outputs are written before upload.
    pub staging: PathBuf,
    pub cancel: CancellationToken,
    /// The most sort buffer this worker grants a task.
    pub sort_buffer_cap: u64,
    /// Set for a Pachyderm pipeline: map tasks are datums.
    pub pachyderm: Option<tormr_core::spec::pachyderm::PfsTask>,
    /// Fault injection: lie about this task's answer (tests only).
    pub misbehaviour: Option<crate::faults::Misbehaviour>,
}

/// A finished attempt: sealed outputs ready to upload.
#[derive(Debug)]
pub struct TaskDone {
    pub written: Vec<(WrittenBucket, PathBuf)>,
    pub counters: Counters,
}

/// A failed attempt, with what the owner needs to see.
#[derive(Debug)]
pub struct TaskFailed {
    pub reason: String,
    pub exit_code: Option<i32>,
    pub stderr_tail: String,
    pub counters: Counters,
    pub cancelled: bool,
}

impl TaskEnv {
    pub(crate) fn seal_to<'a>(&'a self, task: &TaskAssignment) -> SealTo<'a> {
        SealTo {
            job: &self.job,
            staging: &self.staging,
            level: task.compression_level,
        }
    }
}

impl TaskFailed {
    pub(crate) fn ours(reason: impl Into<String>) -> Self {
        TaskFailed {
            reason: reason.into(),
            exit_code: None,
            stderr_tail: String::new(),
            counters: Counters::default(),
            cancelled: false,
        }
    }
}

type Source = BufReader<BucketReader<BufReader<File>>>;

pub(crate) fn open_input(
    env: &TaskEnv,
    input: &InputBucket,
    path: &Path,
) -> Result<Source, TaskFailed> {
    let file = File::open(path).map_err(|e| {
        TaskFailed::ours(format!("opening downloaded bucket {}: {e}", input.bucket))
    })?;
    let reader = BucketReader::new(
        BufReader::with_capacity(256 * 1024, file),
        &input.key,
        &env.job,
        &input.bucket,
    )
    .map_err(|e| TaskFailed::ours(format!("opening bucket {}: {e}", input.bucket)))?;
    Ok(BufReader::with_capacity(256 * 1024, reader))
}

/// Runs one assigned attempt over its downloaded inputs.
pub fn run_task(
    env: &TaskEnv,
    task: &TaskAssignment,
    inputs: &[PathBuf],
) -> Result<TaskDone, TaskFailed> {
    if inputs.len() != task.inputs.len() {
        return Err(TaskFailed::ours("inputs do not match the assignment"));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(task.timeout_secs.max(1));
    let result = match (task.kind, &env.pachyderm) {
        (TaskKind::Map, Some(pfs)) => crate::datum::run_datum(env, task, &inputs[0], pfs, deadline),
        (TaskKind::Map, None) => run_map(env, task, inputs, deadline),
        (TaskKind::Reduce, _) => run_reduce(env, task, inputs, deadline),
    };
    let result = match (result, env.misbehaviour) {
        (Ok(done), Some(_)) => crate::faults::forge(env, task, done)
            .map_err(|e| TaskFailed::ours(format!("forging outputs: {e}"))),
        (result, _) => result,
    };
    result.map(|mut done| {
        done.counters.add(
            TORMR,
            "task milliseconds",
            started.elapsed().as_millis() as i64,
        );
        done
    })
}

pub(crate) fn spec(
    env: &TaskEnv,
    task: &TaskAssignment,
    command: &str,
    deadline: Instant,
) -> ExecSpec {
    ExecSpec {
        command: command.to_owned(),
        env: task.env.clone(),
        workdir: env.workdir.clone(),
        files: env.files.clone(),
        tmpdir: env.scratch.clone(),
        timeout: deadline.saturating_duration_since(Instant::now()),
        argv: None,
        pfs: None,
    }
}

/// Turns a run of job code into a failure, or nothing if it went well.
pub(crate) fn judge<T>(ran: &Ran<T>, what: &str, command: &str) -> Option<TaskFailed> {
    let cancelled = ran.exit == Exit::Cancelled;
    let broken_pipe = matches!(&ran.fed, Err(e) if e.kind() == io::ErrorKind::BrokenPipe);
    let reason = if !ran.exit.success() {
        Some(format!("the {what} {command:?} {}", ran.exit.describe()))
    } else if let Err(e) = &ran.drained {
        Some(format!("reading the {what}'s output failed: {e}"))
    } else if let Err(e) = &ran.fed {
        (!broken_pipe).then(|| format!("feeding the {what} failed: {e}"))
    } else {
        None
    };
    reason.map(|reason| TaskFailed {
        reason,
        exit_code: match ran.exit {
            Exit::Code(c) => Some(c),
            _ => None,
        },
        stderr_tail: ran.stderr.tail.clone(),
        counters: ran.stderr.counters.clone(),
        cancelled,
    })
}

/// Counts lines while copying, so map input records are known.
fn feed_counting(source: &mut dyn Read, out: &mut dyn Write, records: &mut u64) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        *records += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        out.write_all(&buf[..n])?;
    }
}

/// The step's combiner as a child run of job code, once per partition per spill.
struct CodeCombiner<'a> {
    env: &'a TaskEnv,
    task: &'a TaskAssignment,
    command: String,
    deadline: Instant,
    limit: u64,
    failure: Option<TaskFailed>,
    stderr_counters: Counters,
}

impl Combiner for CodeCombiner<'_> {
    fn combine(&mut self, _partition: u32, input: &mut WriteSorted<'_>) -> io::Result<Vec<u8>> {
        let limit = self.limit;
        let ran = run_filter(
            &self.env.rt,
            self.env.executor.as_ref(),
            &spec(self.env, self.task, &self.command, self.deadline),
            &self.env.cancel,
            |w| input(w),
            |r| {
                let mut out = Vec::new();
                r.take(limit + 1).read_to_end(&mut out)?;
                if out.len() as u64 > limit {
                    return Err(io::Error::other(
                        "the combiner wrote more than its sort buffer allows",
                    ));
                }
                Ok(out)
            },
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        self.stderr_counters.merge(&ran.stderr.counters);
        if let Some(f) = judge(&ran, "combiner", &self.command) {
            let msg = f.reason.clone();
            self.failure = Some(f);
            return Err(io::Error::other(msg));
        }
        ran.drained
    }
}

fn shuffle_counters(c: &mut Counters, s: &ShuffleCounts) {
    c.add(FRAMEWORK, "Map output records", s.output_records as i64);
    c.add(FRAMEWORK, "Map output bytes", s.output_bytes as i64);
    c.add(FRAMEWORK, "Spilled Records", s.spilled_records as i64);
    if s.combine_input_records > 0 {
        c.add(
            FRAMEWORK,
            "Combine input records",
            s.combine_input_records as i64,
        );
        c.add(
            FRAMEWORK,
            "Combine output records",
            s.combine_output_records as i64,
        );
    }
}

fn run_map(
    env: &TaskEnv,
    task: &TaskAssignment,
    paths: &[PathBuf],
    deadline: Instant,
) -> Result<TaskDone, TaskFailed> {
    let input = task
        .inputs
        .first()
        .ok_or_else(|| TaskFailed::ours("a map task needs one input bucket"))?;
    let path = &paths[0];
    let mut source = open_input(env, input, path)?;
    let buffer = task.sort_buffer_bytes.min(env.sort_buffer_cap) as usize;
    let mut input_records = 0u64;
    let mut counters = Counters::default();
    let mut combiner = task.combiner.as_ref().map(|c| CodeCombiner {
        env,
        task,
        command: c.clone(),
        deadline,
        // Combiner output is held while it is sorted: bound it by the buffer.
        limit: buffer as u64,
        failure: None,
        stderr_counters: Counters::default(),
    });
    let combiner_dyn: Option<&mut dyn Combiner> = combiner.as_mut().map(|c| c as &mut dyn Combiner);
    let map_only = task.partitions == 0;
    let output = task
        .outputs
        .first()
        .ok_or_else(|| TaskFailed::ours("a map task needs an output bucket"))?;

    let (written, shuffle) = match &task.command {
        None => {
            // Identity mapper: input lines are the map output.
            let result = if map_only {
                seal(output, env.seal_to(task), &mut source)
                    .map(|w| (vec![w], ShuffleCounts::default()))
            } else {
                let mut collector = MapCollector::new(
                    task.keys.clone(),
                    task.partitions,
                    buffer,
                    &env.scratch,
                    combiner_dyn,
                );
                collector
                    .collect(&mut source)
                    .and_then(|_| collector.finish(&task.outputs, env.seal_to(task)))
            };
            input_records = match &result {
                Ok((w, _)) if map_only => w[0].0.records,
                Ok((_, shuffle)) => shuffle.output_records,
                Err(_) => 0,
            };
            result.map_err(|e| TaskFailed::ours(format!("shuffling map output: {e}")))?
        }
        Some(command) => {
            let ran = run_filter(
                &env.rt,
                env.executor.as_ref(),
                &spec(env, task, command, deadline),
                &env.cancel,
                |w| feed_counting(&mut source, w, &mut input_records),
                |r: &mut dyn BufRead| -> io::Result<(Vec<(WrittenBucket, PathBuf)>, ShuffleCounts)> {
                    if map_only {
                        return seal(output, env.seal_to(task), r).map(|w| (vec![w], ShuffleCounts::default()));
                    }
                    let mut collector = MapCollector::new(task.keys.clone(), task.partitions, buffer, &env.scratch, combiner_dyn);
                    collector.collect(r)?;
                    collector.finish(&task.outputs, env.seal_to(task))
                },
            )
            .map_err(|e| TaskFailed::ours(e.to_string()))?;
            counters.merge(&ran.stderr.counters);
            if let Some(mut failed) = judge(&ran, "mapper", command) {
                if let Some(cf) = combiner.as_mut().and_then(|c| c.failure.take()) {
                    failed = cf;
                }
                return Err(failed);
            }
            ran.drained.map_err(|e| TaskFailed::ours(e.to_string()))?
        }
    };
    if let Some(c) = &combiner {
        counters.merge(&c.stderr_counters);
    }
    counters.add(FRAMEWORK, "Map input records", input_records as i64);
    counters.add(TORMR, "Map input bytes", input.plain_bytes as i64);
    if map_only {
        counters.add(
            FRAMEWORK,
            "Map output records",
            written.iter().map(|(w, _)| w.records as i64).sum(),
        );
    } else {
        shuffle_counters(&mut counters, &shuffle);
    }
    Ok(TaskDone { written, counters })
}

/// Merges more than [`FAN_IN`] sorted sources in rounds through plain temp files.
fn premerge(
    env: &TaskEnv,
    mut sources: Vec<Box<dyn BufRead + Send>>,
) -> io::Result<Vec<Box<dyn BufRead + Send>>> {
    let mut round = 0;
    while sources.len() > FAN_IN {
        let mut next: Vec<Box<dyn BufRead + Send>> = Vec::new();
        let mut group = Vec::new();
        for (i, s) in sources.into_iter().enumerate() {
            group.push(s);
            if group.len() == FAN_IN {
                next.push(merge_to_file(env, std::mem::take(&mut group), round, i)?);
            }
        }
        if !group.is_empty() {
            next.push(merge_to_file(env, group, round, usize::MAX)?);
        }
        sources = next;
        round += 1;
    }
    Ok(sources)
}

fn merge_to_file(
    env: &TaskEnv,
    group: Vec<Box<dyn BufRead + Send>>,
    round: usize,
    i: usize,
) -> io::Result<Box<dyn BufRead + Send>> {
    let path = env.scratch.join(format!("premerge-{round}-{i}"));
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        Merger::new(group)?.write_to(&mut w)?;
        w.flush()?;
    }
    let file = File::open(&path)?;
    // The open handle keeps the data; the name can go now.
    let _ = std::fs::remove_file(&path);
    Ok(Box::new(BufReader::with_capacity(256 * 1024, file)))
}

/// Feeds merged lines, counting records and key groups.
fn feed_merged(
    merger: &mut Merger<Box<dyn BufRead + Send>>,
    keys: &KeySpec,
    out: &mut dyn Write,
    records: &mut u64,
    groups: &mut u64,
) -> io::Result<()> {
    let mut last_key: Option<Vec<u8>> = None;
    merger.for_each(|line| {
        *records += 1;
        let key = &line[..keys.key_len(line)];
        if last_key.as_deref() != Some(key) {
            *groups += 1;
            last_key = Some(key.to_vec());
        }
        out.write_all(line)?;
        out.write_all(b"\n")
    })
}

fn run_reduce(
    env: &TaskEnv,
    task: &TaskAssignment,
    paths: &[PathBuf],
    deadline: Instant,
) -> Result<TaskDone, TaskFailed> {
    let output = task
        .outputs
        .first()
        .ok_or_else(|| TaskFailed::ours("a reduce task needs an output bucket"))?;
    let mut sources: Vec<Box<dyn BufRead + Send>> = Vec::with_capacity(paths.len());
    for (input, path) in task.inputs.iter().zip(paths) {
        sources.push(Box::new(open_input(env, input, path)?));
    }
    let sources = premerge(env, sources)
        .map_err(|e| TaskFailed::ours(format!("merging map outputs: {e}")))?;
    let mut merger =
        Merger::new(sources).map_err(|e| TaskFailed::ours(format!("merging map outputs: {e}")))?;
    let (mut records, mut groups) = (0u64, 0u64);
    let mut counters = Counters::default();
    let written = match &task.command {
        None => seal_with(output, env.seal_to(task), |w| {
            feed_merged(&mut merger, &task.keys, w, &mut records, &mut groups)?;
            Ok(records)
        })
        .map_err(|e| TaskFailed::ours(format!("reducing: {e}")))?,
        Some(command) => {
            let ran = run_filter(
                &env.rt,
                env.executor.as_ref(),
                &spec(env, task, command, deadline),
                &env.cancel,
                |w| feed_merged(&mut merger, &task.keys, w, &mut records, &mut groups),
                |r: &mut dyn BufRead| seal(output, env.seal_to(task), r),
            )
            .map_err(|e| TaskFailed::ours(e.to_string()))?;
            counters.merge(&ran.stderr.counters);
            if let Some(failed) = judge(&ran, "reducer", command) {
                return Err(failed);
            }
            ran.drained.map_err(|e| TaskFailed::ours(e.to_string()))?
        }
    };
    counters.add(FRAMEWORK, "Reduce input records", records as i64);
    counters.add(FRAMEWORK, "Reduce input groups", groups as i64);
    counters.add(FRAMEWORK, "Reduce output records", written.0.records as i64);
    counters.add(
        FRAMEWORK,
        "Reduce shuffle bytes",
        task.inputs.iter().map(|i| i.sealed_bytes as i64).sum(),
    );
    Ok(TaskDone {
        written: vec![written],
        counters,
    })
}
