//! Job definitions: what to run, in which steps, with which settings.
//!
//! A [`JobSpec`] is what the owner's `tormr submit` builds and the job master
//! serves to workers. It is built from Hadoop Streaming flags ([`streaming`]) or
//! from an mrjob script's own step descriptions ([`mrjob`]); the worker never
//! needs to know which. [`pachyderm`] reads Pachyderm pipeline specs.

pub mod mrjob;
pub mod pachyderm;
pub mod streaming;

use crate::encoding::Digest;
use crate::partition::KeySpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a job definition was refused. Each names the flag or field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    #[error("-D {key}={value}: {why}")]
    BadConf {
        key: String,
        value: String,
        why: String,
    },
    #[error("-D {key} is not supported: {why}")]
    UnsupportedConf { key: String, why: String },
    #[error("{flag} {value:?}: {why}")]
    BadFlag {
        flag: String,
        value: String,
        why: String,
    },
    #[error("the mrjob script {why}")]
    Mrjob { why: String },
    #[error("the job has no steps")]
    NoSteps,
    #[error("the Pachyderm pipeline spec: {why}")]
    Pachyderm { why: String },
}

/// A file shipped into every task's working directory (`-file`, mrjob FILES).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFile {
    /// Name inside the working directory (may contain `/` for shipped folders).
    pub name: String,
    pub digest: Digest,
    pub size: u64,
    pub executable: bool,
}

impl JobFile {
    /// Whether `name` is a safe relative path: no `..`, not absolute, no empty parts.
    pub fn name_is_safe(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 255
            && !name.starts_with('/')
            && name
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && !name.contains('\0')
    }
}

/// One MapReduce step. Step k > 0 reads the output of step k−1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    /// `None` is the identity mapper.
    pub mapper: Option<String>,
    pub combiner: Option<String>,
    /// `None` with `reduces > 0` is the identity reducer.
    pub reducer: Option<String>,
    /// Number of reduce partitions; 0 makes the step map-only.
    pub reduces: u32,
    pub keys: KeySpec,
    /// Settings that apply to this step, on top of the job's.
    pub conf: BTreeMap<String, String>,
}

impl StepSpec {
    pub fn is_map_only(&self) -> bool {
        self.reduces == 0
    }
}

/// Bounds and retry policy of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLimits {
    /// Attempts per map task before the job fails (`mapreduce.map.maxattempts`).
    pub map_attempts: u32,
    /// Attempts per reduce task (`mapreduce.reduce.maxattempts`).
    pub reduce_attempts: u32,
    /// Most input buckets any one worker may be given (`tormr.max.buckets.per.worker`).
    pub max_buckets_per_worker: Option<u32>,
    /// Input bytes per bucket before compression (`tormr.bucket.bytes`).
    pub bucket_bytes: u64,
    /// Sort buffer a worker should use (`mapreduce.task.io.sort.mb`); the worker caps it.
    pub sort_buffer_bytes: u64,
    /// Wall-clock limit of one task attempt (`mapreduce.task.timeout`, ms on the flag).
    pub task_timeout_secs: u64,
    /// zstd level for sealed buckets (`tormr.compression.level`, -7 to 19):
    /// negative is faster, higher is smaller (worth it over Tor).
    #[serde(default = "default_level")]
    pub compression_level: i32,
    /// How results of untrusted workers are checked (`tormr.verify.*`).
    #[serde(default)]
    pub verify: VerifyPolicy,
}

/// Who settles a disagreement between two copies of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Arbitration {
    /// A worker the owner trusts fully if one has joined, else a third
    /// untrusted worker whose answer makes a majority.
    #[default]
    Auto,
    /// Only a worker the owner trusts fully; the task waits for one.
    Trusted,
    /// Any third worker; two agreeing copies out of three win.
    Majority,
}

/// Adaptive replication, BOINC's way: a result of a worker at trust `t` is
/// recomputed elsewhere with probability `max(p_min, 1 - t)`, where `t`
/// grows with consecutive agreements up to 1 after `trust_after` of them and
/// drops to 0 on any disagreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyPolicy {
    /// Off: every result is taken as reported (`tormr.verify=off`).
    pub enabled: bool,
    /// The least replication probability, in parts per million
    /// (`tormr.verify.p_min`, given as a fraction such as 0.05).
    pub p_min_ppm: u32,
    /// Consecutive agreements that make a pseudonym fully trusted
    /// (`tormr.verify.trust_after`).
    pub trust_after: u32,
    /// `tormr.verify.arbitration`: auto, trusted or majority.
    pub arbitration: Arbitration,
    /// Ringers (`tormr.verify.ringers`): map tasks the owner's own workers
    /// answer first; every volunteer is then handed one among its first few
    /// tasks, looking like any other, and banned at once if its answer
    /// differs from the owner's. Works with `tormr.verify=off` too.
    #[serde(default)]
    pub ringers: u32,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            enabled: true,
            p_min_ppm: 50_000,
            trust_after: 10,
            arbitration: Arbitration::Auto,
            ringers: 0,
        }
    }
}

impl VerifyPolicy {
    pub fn p_min(&self) -> f64 {
        f64::from(self.p_min_ppm) / 1e6
    }

    /// Trust earned by `streak` consecutive agreements, from 0 to 1.
    pub fn trust(&self, streak: u32) -> f64 {
        (f64::from(streak) / f64::from(self.trust_after.max(1))).min(1.0)
    }

    /// How likely a result of a worker at `trust` is recomputed.
    pub fn replication_probability(&self, trust: f64) -> f64 {
        if !self.enabled {
            return 0.0;
        }
        self.p_min().max(1.0 - trust).clamp(0.0, 1.0)
    }
}

fn default_level() -> i32 {
    crate::seal::DEFAULT_LEVEL
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            map_attempts: 4,
            reduce_attempts: 4,
            max_buckets_per_worker: None,
            bucket_bytes: 64 << 20,
            sort_buffer_bytes: 256 << 20,
            task_timeout_secs: 3600,
            compression_level: crate::seal::DEFAULT_LEVEL,
            verify: VerifyPolicy::default(),
        }
    }
}

/// A whole job as workers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub steps: Vec<StepSpec>,
    pub files: Vec<JobFile>,
    /// `-cmdenv` variables.
    pub env: BTreeMap<String, String>,
    /// `-D` settings of the whole job.
    pub conf: BTreeMap<String, String>,
    pub limits: JobLimits,
    /// The container image every task runs in; `None` runs the commands as
    /// plain processes, which only the owner's own workers (and local mode) do.
    #[serde(default)]
    pub image: Option<crate::image::ImageRef>,
    /// Set for a Pachyderm pipeline: map tasks are datums.
    #[serde(default)]
    pub pachyderm: Option<pachyderm::PfsTask>,
}

impl JobSpec {
    /// The environment a task of `step` sees from settings: every `-D` key with
    /// characters outside `[A-Za-z0-9]` turned into `_` (Streaming's rule), then
    /// `-cmdenv`.
    pub fn conf_env(&self, step: usize) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let step_conf = self.steps.get(step).map(|s| &s.conf);
        for (k, v) in self.conf.iter().chain(step_conf.into_iter().flatten()) {
            env.insert(env_name(k), v.clone());
        }
        for (k, v) in &self.env {
            env.insert(k.clone(), v.clone());
        }
        env
    }
}

/// Joins words into a POSIX shell command line, quoting only words that need it.
pub fn join_words<S: AsRef<str>>(words: &[S]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./=:,+@%-".contains(c))
    };
    words
        .iter()
        .map(|w| {
            let w = w.as_ref();
            if plain(w) {
                w.to_owned()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Streaming's environment-variable name for a configuration key.
pub fn env_name(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_checked() {
        for ok in ["mapper.py", "lib/util.py"] {
            assert!(JobFile::name_is_safe(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a"] {
            assert!(!JobFile::name_is_safe(bad), "{bad}");
        }
    }

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(
            join_words(&["python3", "x.py", "--step-num=0"]),
            "python3 x.py --step-num=0"
        );
        assert_eq!(join_words(&["a b", "it's", ""]), "'a b' 'it'\\''s' ''");
        assert_eq!(
            shell_words::split(&join_words(&["a b", "it's", ""])).unwrap(),
            ["a b", "it's", ""]
        );
    }

    #[test]
    fn env_names_follow_streaming() {
        assert_eq!(env_name("mapreduce.job.reduces"), "mapreduce_job_reduces");
        assert_eq!(env_name("my-key.x"), "my_key_x");
    }
}
