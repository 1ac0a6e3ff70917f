//! Messages between workers and a job master: join with a ticket, lease tasks,
//! heartbeat, report results.

use super::{Call, Method, clamp_wait};
use crate::counters::Counters;
use crate::encoding::Digest;
use crate::identity::{PublicKey, Signed, SignedPayload};
use crate::ids::{AttemptId, BucketId, JobId, TaskKind, TicketId};
use crate::partition::KeySpec;
use crate::seal::{BucketKey, SealSummary};
use crate::spec::JobSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A worker's proof that it holds the pseudonym key a ticket names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinProof {
    pub ticket: TicketId,
    pub job_key: PublicKey,
    pub issued_at: u64,
}

impl SignedPayload for JoinProof {
    const DOMAIN: &'static str = "tormr/job/join-proof/v1";
}

/// `POST /v1/join`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Join {
    pub ticket: Signed<crate::wire::bulletin::JoinTicket>,
    pub proof: Signed<JoinProof>,
}

impl Call for Join {
    type Response = Joined;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/join".into()
    }
}

/// An owner's statement, signed by her long-term owner key, that a job (named
/// by its job key) is hers. A worker started `--trusted-by` that key runs such
/// a job's code without a sandbox when the job names no image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerEndorsement {
    pub job_key: PublicKey,
    pub issued_at: u64,
}

impl SignedPayload for OwnerEndorsement {
    const DOMAIN: &'static str = "tormr/job/owner-endorsement/v1";
}

impl OwnerEndorsement {
    /// Whether `endorsement` is `owner`'s for the job whose key is `job_key`.
    pub fn vouches(
        endorsement: Option<&Signed<OwnerEndorsement>>,
        owner: &PublicKey,
        job_key: &PublicKey,
    ) -> bool {
        endorsement
            .and_then(|e| e.open_by(owner).ok())
            .is_some_and(|e| &e.job_key == job_key)
    }
}

/// What a worker learns on joining.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joined {
    /// Bearer token for every later call of this worker.
    pub session: String,
    pub job: JobId,
    /// Where the job's buckets are.
    pub datalayer: String,
    pub spec: JobSpec,
    /// Send a heartbeat at least this often.
    pub heartbeat_secs: u64,
    /// The owner's endorsement, when she runs the job on her own workers.
    #[serde(default)]
    pub endorsement: Option<Signed<OwnerEndorsement>>,
}

/// `POST /v1/lease` (long-poll): ask for a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub wait_secs: u64,
    /// Attempts the worker is running now; their leases are extended.
    pub running: Vec<AttemptId>,
}

impl Call for Lease {
    type Response = LeaseAnswer;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/lease".into()
    }
    fn hold_secs(&self) -> u64 {
        clamp_wait(self.wait_secs)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "answer")]
pub enum LeaseAnswer {
    Task {
        task: Box<TaskAssignment>,
    },
    /// Nothing now; ask again (the job is between phases or others hold the rest).
    Wait,
    /// The job is finished: leave.
    Done,
}

/// One sealed bucket a task reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputBucket {
    pub bucket: BucketId,
    pub key: BucketKey,
    /// Capability token for GET on the data layer.
    pub token: String,
    pub sealed_bytes: u64,
    /// Plaintext bytes (for counters and progress).
    pub plain_bytes: u64,
}

/// One sealed bucket a task writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputBucket {
    pub partition: u32,
    pub bucket: BucketId,
    pub key: BucketKey,
    /// Capability token for PUT on the data layer.
    pub token: String,
}

/// Everything a worker needs to run one attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskAssignment {
    pub attempt: AttemptId,
    pub kind: TaskKind,
    /// Mapper or reducer; `None` is the identity.
    pub command: Option<String>,
    pub combiner: Option<String>,
    /// Reduce partitions of a map task's output (0: map-only, output as one bucket).
    pub partitions: u32,
    pub keys: KeySpec,
    pub inputs: Vec<InputBucket>,
    pub outputs: Vec<OutputBucket>,
    /// Streaming's per-task environment plus the job's settings.
    pub env: BTreeMap<String, String>,
    pub timeout_secs: u64,
    pub sort_buffer_bytes: u64,
    /// zstd level for the sealed outputs.
    #[serde(default = "default_level")]
    pub compression_level: i32,
}

fn default_level() -> i32 {
    crate::seal::DEFAULT_LEVEL
}

/// `POST /v1/heartbeat`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub running: Vec<AttemptId>,
}

impl Call for Heartbeat {
    type Response = HeartbeatAnswer;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/heartbeat".into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HeartbeatAnswer {
    /// Attempts to abandon: their lease was lost or another copy already won.
    pub cancel: Vec<AttemptId>,
    pub job_done: bool,
}

/// One output bucket as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrittenBucket {
    pub partition: u32,
    pub bucket: BucketId,
    pub summary: SealSummary,
    pub records: u64,
    /// SHA-256 of the output's lines sorted bytewise, each ending in a
    /// newline: what verification compares, so two honest copies agree even
    /// when job code emits lines in another order. Absent when the worker
    /// could not afford the sort (then the plaintext digest is compared).
    #[serde(default)]
    pub canonical_digest: Option<Digest>,
    /// The data layer's receipt for the stored bucket: with it the job
    /// master need not ask the data layer whether the bucket is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Succeeded {
        outputs: Vec<WrittenBucket>,
    },
    Failed {
        reason: String,
        exit_code: Option<i32>,
        /// The last lines the job code wrote on stderr.
        stderr_tail: String,
    },
}

/// `POST /v1/report`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub attempt: AttemptId,
    pub outcome: Outcome,
    pub counters: Counters,
    pub elapsed_ms: u64,
    /// The reporting slot is free: lease its next task in the same round
    /// trip, as Hadoop's heartbeats carry new tasks back. The lease's wait is
    /// ignored (a report never waits); the answer's `next` holds the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Lease>,
}

impl Call for Report {
    type Response = ReportAnswer;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/report".into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportAnswer {
    /// Whether the job master took the result (false: the lease was lost).
    pub accepted: bool,
    pub note: String,
    /// The answer to the report's `next` lease: a task, `wait` (nothing
    /// ready now: lease as usual) or `done`. Absent when none was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<LeaseAnswer>,
}

/// `GET /v1/status`: the job as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetStatus;

impl Call for GetStatus {
    type Response = JobStatus;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        "/v1/status".into()
    }
}

/// Progress of one phase (the maps or the reduces of one step).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhaseStatus {
    pub step: u32,
    pub kind: Option<TaskKind>,
    pub total: u32,
    pub done: u32,
    pub running: u32,
    /// Whether more tasks may still be added (input still being uploaded).
    pub open: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerStatus {
    pub pseudonym: String,
    pub running: u32,
    pub done: u32,
    pub failed: u32,
    pub input_buckets: u32,
    pub alive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum JobState {
    Running,
    Succeeded,
    Failed {
        task: String,
        reason: String,
        stderr_tail: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub job: JobId,
    pub state: JobState,
    pub phases: Vec<PhaseStatus>,
    pub workers: Vec<WorkerStatus>,
    pub counters: Counters,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn only_the_owners_endorsement_of_this_job_vouches() {
        let (owner, other, job, job2) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        let of = |signer: &Identity, job: &Identity| {
            Signed::sign(
                signer,
                &OwnerEndorsement {
                    job_key: job.public(),
                    issued_at: 0,
                },
            )
        };
        let (o, j) = (owner.public(), job.public());
        assert!(OwnerEndorsement::vouches(Some(&of(&owner, &job)), &o, &j));
        assert!(!OwnerEndorsement::vouches(None, &o, &j));
        assert!(!OwnerEndorsement::vouches(Some(&of(&other, &job)), &o, &j));
        assert!(!OwnerEndorsement::vouches(Some(&of(&owner, &job2)), &o, &j));
        let mut forged = of(&other, &job);
        forged.signer = o;
        assert!(!OwnerEndorsement::vouches(Some(&forged), &o, &j));
    }
}
