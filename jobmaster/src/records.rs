//! What the job master keeps in its store: the job, its input buckets with
//! their keys (the key vault), finished tasks with their outputs' keys, and
//! redeemed tickets. Enough to resume a job after a crash without redoing
//! finished work.

use serde::{Deserialize, Serialize};
use tormr_core::counters::Counters;
use tormr_core::encoding::Digest;
use tormr_core::identity::PublicKey;
use tormr_core::ids::{AttemptId, BucketId, JobId, RequestId, TaskId, TaskKind, TicketId};
use tormr_core::seal::BucketKey;
use tormr_core::spec::JobSpec;
use tormr_core::store::{Batch, Store, StoreError, StoreExt};

/// Where a step-0 bucket came from, for `mapreduce_map_input_file` and friends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The file's name relative to the input argument (never the owner's full path).
    pub name: String,
    pub offset: u64,
    pub length: u64,
}

/// One sealed bucket on the data layer and the key that opens it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketRef {
    pub bucket: BucketId,
    pub key: BucketKey,
    pub sealed_bytes: u64,
    pub plain_bytes: u64,
    /// Absent for input buckets, whose plaintext nobody compares.
    pub plain_digest: Option<Digest>,
    /// The worker's digest of its sorted lines, which verification compares.
    #[serde(default)]
    pub canonical_digest: Option<Digest>,
    pub records: u64,
    pub source: Option<Source>,
}

/// The winning attempt of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub attempt: AttemptId,
    pub outputs: Vec<BucketRef>,
    pub counters: Counters,
    pub elapsed_ms: u64,
}

/// The job as first stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: JobId,
    pub spec: JobSpec,
    pub created: u64,
}

/// The cluster request the job was matched through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub board: PublicKey,
    pub request: RequestId,
    /// Requests of earlier runs of a resumed job: still on the board until
    /// the job ends (their workers ask it whether the job stands), so tickets
    /// they hand out are honoured too.
    #[serde(default)]
    pub earlier: Vec<RequestId>,
}

impl ClusterRecord {
    /// Whether a ticket for `request` admits a worker to this job.
    pub fn admits(&self, request: &RequestId) -> bool {
        &self.request == request || self.earlier.contains(request)
    }

    /// Every request of this job on the board, the current one first.
    pub fn all_requests(&self) -> impl Iterator<Item = &RequestId> {
        std::iter::once(&self.request).chain(&self.earlier)
    }
}

/// A worker's session, kept so that a resumed job master recognises the
/// workers that were in the job and they carry on without a new ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub worker: u32,
    pub pseudonym: PublicKey,
}

/// Typed access to one job's records.
pub struct Records {
    store: std::sync::Arc<dyn Store>,
    prefix: String,
}

fn task_key(t: &TaskId) -> String {
    let kind = match t.kind {
        TaskKind::Map => "m",
        TaskKind::Reduce => "r",
    };
    format!("{:04}-{kind}-{:06}", t.step, t.index)
}

impl Records {
    pub fn new(store: std::sync::Arc<dyn Store>, job: &JobId) -> Self {
        Records {
            store,
            prefix: format!("jobs/{job}/"),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn store(&self) -> &std::sync::Arc<dyn Store> {
        &self.store
    }

    pub async fn put_job(&self, record: &JobRecord) -> Result<(), StoreError> {
        self.store.put_json(&self.key("job"), record).await
    }

    pub async fn job(&self) -> Result<Option<JobRecord>, StoreError> {
        self.store.get_json(&self.key("job")).await
    }

    pub async fn put_cluster(&self, record: &ClusterRecord) -> Result<(), StoreError> {
        self.store.put_json(&self.key("cluster"), record).await
    }

    pub async fn cluster(&self) -> Result<Option<ClusterRecord>, StoreError> {
        self.store.get_json(&self.key("cluster")).await
    }

    pub async fn put_input(&self, index: u32, input: &BucketRef) -> Result<(), StoreError> {
        self.store
            .put_json(&self.key(&format!("input/{index:06}")), input)
            .await
    }

    pub async fn inputs(&self) -> Result<Vec<BucketRef>, StoreError> {
        Ok(self
            .store
            .scan_json(&self.key("input/"))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    pub async fn close_input(&self, count: u32) -> Result<(), StoreError> {
        self.store.put_json(&self.key("input-closed"), &count).await
    }

    pub async fn input_closed(&self) -> Result<Option<u32>, StoreError> {
        self.store.get_json(&self.key("input-closed")).await
    }

    pub async fn put_task(&self, task: &TaskId, result: &TaskResult) -> Result<(), StoreError> {
        self.store
            .put_json(
                &self.key(&format!("task/{}", task_key(task))),
                &(task, result),
            )
            .await
    }

    /// Forgets a task's result (its worker was banned, or it was built on
    /// such a result).
    pub async fn forget_task(&self, task: &TaskId) -> Result<(), StoreError> {
        self.store
            .apply(Batch::new().delete(self.key(&format!("task/{}", task_key(task)))))
            .await
            .map(|_| ())
    }

    pub async fn tasks(&self) -> Result<Vec<(TaskId, TaskResult)>, StoreError> {
        Ok(self
            .store
            .scan_json(&self.key("task/"))
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Marks a ticket redeemed; false if it already was.
    pub async fn redeem_ticket(
        &self,
        ticket: &TicketId,
        worker: &PublicKey,
    ) -> Result<bool, StoreError> {
        let key = self.key(&format!("ticket/{ticket}"));
        self.store
            .apply(
                Batch::new()
                    .put_json(key.clone(), worker)
                    .require_absent(key),
            )
            .await
    }

    /// Keeps a session under its token (the owner's own store: the token is
    /// a bearer secret, as the store's bucket keys are).
    pub async fn put_session(
        &self,
        token: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.store
            .put_json(&self.key(&format!("session/{token}")), session)
            .await
    }

    /// Every session by token.
    pub async fn sessions(&self) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let prefix = self.key("session/");
        Ok(self
            .store
            .scan_json(&prefix)
            .await?
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(&prefix).unwrap_or(&k).to_owned(), v))
            .collect())
    }

    /// How many times the job was resumed.
    pub async fn resumes(&self) -> Result<u32, StoreError> {
        Ok(self
            .store
            .get_json(&self.key("resumes"))
            .await?
            .unwrap_or(0))
    }

    pub async fn put_resumes(&self, n: u32) -> Result<(), StoreError> {
        self.store.put_json(&self.key("resumes"), &n).await
    }

    pub async fn delete_all(&self) -> Result<(), StoreError> {
        self.store
            .apply(Batch::new().delete_prefix(self.prefix.clone()))
            .await
            .map(|_| ())
    }
}
