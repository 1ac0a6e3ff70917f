//! Deliberate misbehaviour, for fault-injection tests and drills only: a
//! worker that lies about its answers, so the job master's verification can
//! be seen catching it. Off unless a worker is started with it (`tormr
//! worker --fault`, hidden from help, or an injected local worker).

use crate::task::{TaskDone, TaskEnv};
use std::io::{self, Read};
use tormr_core::seal::BucketReader;
use tormr_core::wire::job::TaskAssignment;

/// What a misbehaving worker does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Misbehaviour {
    /// Forges the output of this share of its tasks in a job (0 to 1),
    /// evenly spread so a test knows it happens (0.1: its 10th, 20th, …
    /// task): the job code runs, then a made-up line is added to every
    /// output bucket, and the digests reported are those of the forgery.
    Cheat { rate: f64 },
}

impl std::str::FromStr for Misbehaviour {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let rate = text
            .strip_prefix("cheat:")
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("{text:?}: expected cheat:RATE with RATE from 0 to 1"))?;
        Ok(Misbehaviour::Cheat { rate })
    }
}

impl Misbehaviour {
    /// Whether to lie about the `nth` task of a job (counting from 1).
    pub fn lies_on(&self, nth: u64) -> bool {
        let Misbehaviour::Cheat { rate } = *self;
        let ppm = (rate * 1e6).round() as u64;
        nth >= 1 && nth * ppm / 1_000_000 > (nth - 1) * ppm / 1_000_000
    }
}

/// Reseals every output of `done` with one forged line more.
pub fn forge(env: &TaskEnv, task: &TaskAssignment, done: TaskDone) -> io::Result<TaskDone> {
    let mut written = Vec::with_capacity(done.written.len());
    for (bucket, path) in done.written {
        let out = task
            .outputs
            .iter()
            .find(|o| o.bucket == bucket.bucket)
            .ok_or_else(|| io::Error::other("forging an output that was not assigned"))?;
        let mut plain = Vec::new();
        BucketReader::new(
            io::BufReader::new(std::fs::File::open(&path)?),
            &out.key,
            &env.job,
            &out.bucket,
        )?
        .read_to_end(&mut plain)?;
        let records = bucket.records;
        written.push(crate::shuffle::collector::seal_with(
            out,
            env.seal_to(task),
            |w| {
                w.write_all(&plain)?;
                w.write_all(b"tormr-forged-line\t1\n")?;
                Ok(records + 1)
            },
        )?);
    }
    Ok(TaskDone {
        written,
        counters: done.counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misbehaviour_specs() {
        assert_eq!(
            "cheat:0.1".parse::<Misbehaviour>(),
            Ok(Misbehaviour::Cheat { rate: 0.1 })
        );
        assert!("cheat:2".parse::<Misbehaviour>().is_err());
        assert!("stall".parse::<Misbehaviour>().is_err());
        let lies = |rate: f64| -> Vec<u64> {
            (1..=30)
                .filter(|n| Misbehaviour::Cheat { rate }.lies_on(*n))
                .collect()
        };
        assert_eq!(lies(1.0).len(), 30);
        assert!(lies(0.0).is_empty());
        assert_eq!(lies(0.1), vec![10, 20, 30]);
        assert_eq!(lies(0.3).len(), 9);
    }
}
