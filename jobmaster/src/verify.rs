//! Checking untrusted results: copies of one task, compared by digest, and
//! who wins when they disagree.
//!
//! A result of a worker at trust `t` is recomputed on another worker with
//! probability `max(p_min, 1 - t)` (the job's [`VerifyPolicy`]). The copies'
//! outputs are compared partition by partition, by canonical digest (sorted
//! lines) where both workers gave one, else by plaintext digest. Two agreeing
//! copies settle the task. A disagreement needs an arbiter: a worker the owner
//! trusts fully decides alone; without one, a strict majority of at least two
//! agreeing copies decides. Whoever disagrees with the winner lied.

use crate::records::{BucketRef, TaskResult};
use crate::scheduler::WorkerId;
use tormr_core::counters::Counters;
use tormr_core::ids::AttemptId;
use tormr_core::spec::{Arbitration, VerifyPolicy};

/// Copies beyond which a dispute without a winner fails the task: by then
/// the job code is more likely nondeterministic than the workers dishonest.
pub const MAX_COPIES: usize = 5;

/// One worker's answer for a task.
#[derive(Debug, Clone)]
pub struct Claim {
    pub worker: WorkerId,
    /// The owner trusts this worker fully.
    pub trusted: bool,
    pub attempt: AttemptId,
    pub outputs: Vec<BucketRef>,
    pub counters: Counters,
    pub elapsed_ms: u64,
}

impl Claim {
    /// Whether two answers are the same output.
    pub fn agrees(&self, other: &Claim) -> bool {
        same_answer(&self.outputs, &other.outputs)
    }

    pub fn into_result(self) -> TaskResult {
        TaskResult {
            attempt: self.attempt,
            outputs: self.outputs,
            counters: self.counters,
            elapsed_ms: self.elapsed_ms,
        }
    }
}

/// A task whose answer is being checked.
#[derive(Debug, Clone, Default)]
pub struct Check {
    pub claims: Vec<Claim>,
}

/// What a check has come to.
#[derive(Debug)]
pub enum Settled {
    /// Waiting for another copy; `arbiter` when the copies so far disagree.
    Open { arbiter: bool },
    /// `claims[winner]` is the answer; `agreed` confirmed it, `liars` did not.
    Won {
        winner: usize,
        agreed: Vec<WorkerId>,
        liars: Vec<WorkerId>,
    },
    /// Too many copies disagree with no winner.
    Deadlock,
}

impl Check {
    pub fn has_claim_from(&self, worker: WorkerId) -> bool {
        self.claims.iter().any(|c| c.worker == worker)
    }

    /// Decides the check from its claims so far.
    pub fn settle(&self) -> Settled {
        let claims = &self.claims;
        let winner = match claims.iter().position(|c| c.trusted) {
            Some(t) => Some(t),
            None => self.majority(),
        };
        match winner {
            Some(w) => {
                let (agreed, liars) = claims
                    .iter()
                    .partition::<Vec<&Claim>, _>(|c| c.agrees(&claims[w]));
                Settled::Won {
                    winner: w,
                    agreed: agreed.iter().map(|c| c.worker).collect(),
                    liars: liars.iter().map(|c| c.worker).collect(),
                }
            }
            None if claims.len() >= MAX_COPIES => Settled::Deadlock,
            None => Settled::Open {
                arbiter: claims.len() >= 2,
            },
        }
    }

    /// The claim whose answer at least two claims share, more than any other.
    fn majority(&self) -> Option<usize> {
        let votes: Vec<usize> = self
            .claims
            .iter()
            .map(|c| self.claims.iter().filter(|o| o.agrees(c)).count())
            .collect();
        let best = *votes.iter().max()?;
        if best < 2 {
            return None;
        }
        let leaders: Vec<usize> = (0..votes.len()).filter(|&i| votes[i] == best).collect();
        let first = leaders[0];
        leaders
            .iter()
            .all(|&i| self.claims[i].agrees(&self.claims[first]))
            .then_some(first)
    }
}

/// Whether two answers to a task are the same output, partition by
/// partition: by canonical digest where both have one, else by plaintext
/// digest.
pub fn same_answer(a: &[BucketRef], b: &[BucketRef]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| match (x.canonical_digest, y.canonical_digest) {
                (Some(cx), Some(cy)) => cx == cy,
                _ => x.plain_digest.is_some() && x.plain_digest == y.plain_digest,
            })
}

/// Whether the next copy of a disputed task must come from a trusted worker.
pub fn arbiter_must_be_trusted(policy: &VerifyPolicy, trusted_worker_alive: bool) -> bool {
    match policy.arbitration {
        Arbitration::Trusted => true,
        Arbitration::Majority => false,
        Arbitration::Auto => trusted_worker_alive,
    }
}

/// A small deterministic generator for replication draws (splitmix64), so a
/// scheduler replays exactly under test.
#[derive(Debug, Clone)]
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Self {
        Draws(seed)
    }

    /// A uniform draw in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tormr_core::encoding::Digest;
    use tormr_core::ids::{BucketId, TaskId, TaskKind};
    use tormr_core::seal::BucketKey;

    fn claim(worker: WorkerId, trusted: bool, answer: u8) -> Claim {
        Claim {
            worker,
            trusted,
            attempt: AttemptId {
                task: TaskId {
                    step: 0,
                    kind: TaskKind::Map,
                    index: 0,
                },
                attempt: worker + 1,
            },
            outputs: vec![BucketRef {
                bucket: BucketId::parse(&format!("b{worker}")).unwrap(),
                key: BucketKey::random(),
                sealed_bytes: 1,
                plain_bytes: 1,
                plain_digest: Some(Digest([worker as u8; 32])),
                canonical_digest: Some(Digest([answer; 32])),
                records: 1,
                source: None,
            }],
            counters: Counters::default(),
            elapsed_ms: 1,
        }
    }

    fn check(claims: Vec<Claim>) -> Settled {
        Check { claims }.settle()
    }

    #[test]
    fn copies_agree_by_canonical_digest() {
        match check(vec![claim(0, false, 7), claim(1, false, 7)]) {
            Settled::Won { agreed, liars, .. } => {
                assert_eq!(agreed, vec![0, 1]);
                assert!(liars.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(vec![claim(0, false, 7)]),
            Settled::Open { arbiter: false }
        ));
    }

    #[test]
    fn a_disagreement_waits_for_an_arbiter_and_the_arbiter_decides() {
        assert!(matches!(
            check(vec![claim(0, false, 7), claim(1, false, 8)]),
            Settled::Open { arbiter: true }
        ));
        match check(vec![
            claim(0, false, 7),
            claim(1, false, 8),
            claim(2, true, 8),
        ]) {
            Settled::Won {
                winner,
                agreed,
                liars,
            } => {
                assert_eq!(winner, 2);
                assert_eq!(agreed, vec![1, 2]);
                assert_eq!(liars, vec![0]);
            }
            other => panic!("{other:?}"),
        }
        // An untrusted third copy makes a majority.
        match check(vec![
            claim(0, false, 7),
            claim(1, false, 8),
            claim(2, false, 7),
        ]) {
            Settled::Won { liars, .. } => assert_eq!(liars, vec![1]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_trusted_copy_outweighs_any_number_of_untrusted_ones() {
        match check(vec![
            claim(0, false, 7),
            claim(1, false, 7),
            claim(2, true, 9),
        ]) {
            Settled::Won { liars, winner, .. } => {
                assert_eq!(winner, 2);
                assert_eq!(liars, vec![0, 1]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_majority_it_gives_up_after_five_copies() {
        let three = vec![claim(0, false, 1), claim(1, false, 2), claim(2, false, 3)];
        assert!(matches!(check(three), Settled::Open { arbiter: true }));
        let five: Vec<Claim> = (0..5).map(|i| claim(i, false, i as u8)).collect();
        assert!(matches!(check(five), Settled::Deadlock));
        // Two pairs tie: no winner yet.
        let tie = vec![
            claim(0, false, 1),
            claim(1, false, 1),
            claim(2, false, 2),
            claim(3, false, 2),
        ];
        assert!(matches!(check(tie), Settled::Open { .. }));
    }

    #[test]
    fn plaintext_digests_stand_in_when_a_canonical_one_is_missing() {
        let mut a = claim(0, false, 7);
        let mut b = claim(1, false, 7);
        a.outputs[0].canonical_digest = None;
        assert!(!a.agrees(&b), "plaintext digests differ");
        b.outputs[0].plain_digest = a.outputs[0].plain_digest;
        assert!(a.agrees(&b));
    }

    #[test]
    fn draws_are_uniform_enough_and_replayable() {
        let mut d = Draws::new(42);
        let xs: Vec<f64> = (0..10_000).map(|_| d.uniform()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let below = xs.iter().filter(|x| **x < 0.1).count();
        assert!((800..1200).contains(&below), "{below}");
        assert_eq!(Draws::new(42).uniform(), xs[0]);
    }
}
