//! What volunteers and owners call on a bulletin board.
//!
//! A board may be served by several replicas sharing one store: the client
//! knows all their addresses, sticks to the one that last answered, and moves
//! on to the next when it cannot be reached, so a dead replica costs a caller
//! one failed attempt, not its job.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tormr_core::identity::PublicKey;
use tormr_core::identity::{Identity, Signed};
use tormr_core::ids::RequestId;
use tormr_core::wire::Call;
use tormr_core::wire::bulletin::{
    Ban, BoardInfo, Capabilities, ClusterRequest, GetBoard, PollTicket, PostBan, PostRequest,
    Register, Registered, Registration, RequestPosted, RequestState, TicketAnswer, TicketPoll,
    WatchRequest, Withdraw, Withdrawal,
};
use tormr_net::{Address, ClientError, HttpClient, Transport};

#[derive(Clone)]
pub struct BulletinClient {
    /// One client per replica of the board; never empty.
    replicas: Arc<[HttpClient]>,
    /// The replica that answered last.
    current: Arc<AtomicUsize>,
}

impl BulletinClient {
    pub fn new(http: HttpClient) -> Self {
        Self::replicated(http, Vec::new())
    }

    /// A client for a board served by the replicas at `addresses`, reached
    /// through `transport`; `None` if no address is given.
    pub fn for_replicas(transport: Arc<dyn Transport>, addresses: &[Address]) -> Option<Self> {
        let mut replicas = addresses
            .iter()
            .map(|a| HttpClient::new(transport.clone(), a.clone()));
        let first = replicas.next()?;
        Some(Self::replicated(first, replicas.collect()))
    }

    /// A client for a board served by `first` and the `others`.
    pub fn replicated(first: HttpClient, others: Vec<HttpClient>) -> Self {
        let mut replicas = vec![first];
        replicas.extend(others);
        BulletinClient {
            replicas: replicas.into(),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The replica in use.
    pub fn http(&self) -> &HttpClient {
        let i = self.current.load(Ordering::Relaxed) % self.replicas.len();
        &self.replicas[i]
    }

    /// Sends `call` to the replica in use, failing over to the others in
    /// turn while the error is one another replica may not have.
    async fn call<C: Call>(&self, call: &C) -> Result<C::Response, ClientError> {
        let n = self.replicas.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut tried = 0;
        loop {
            let i = (start + tried) % n;
            let replica = &self.replicas[i];
            match replica.call(call).await {
                Ok(answer) => {
                    if i != start {
                        self.current.store(i, Ordering::Relaxed);
                        tracing::info!("bulletin board: now using replica {}", replica.address());
                    }
                    return Ok(answer);
                }
                Err(e) if e.is_retryable() && tried + 1 < n => {
                    tracing::info!(
                        "bulletin board replica {} failed ({e}); trying the next",
                        replica.address()
                    );
                    tried += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn info(&self) -> Result<BoardInfo, ClientError> {
        self.call(&GetBoard).await
    }

    /// Registers (or refreshes) the volunteer `identity`.
    pub async fn register(
        &self,
        identity: &Identity,
        capabilities: Capabilities,
        trusted_by: Option<PublicKey>,
        discovery_key: Option<String>,
    ) -> Result<Registered, ClientError> {
        let registration = Registration {
            capabilities,
            trusted_by,
            discovery_key,
            issued_at: tormr_core::unix_now(),
        };
        self.call(&Register(Signed::sign(identity, &registration)))
            .await
    }

    /// Waits up to `wait` for a ticket.
    pub async fn poll_ticket(
        &self,
        identity: &Identity,
        wait: Duration,
    ) -> Result<TicketAnswer, ClientError> {
        let poll = TicketPoll {
            issued_at: tormr_core::unix_now(),
            wait_secs: wait.as_secs(),
        };
        self.call(&PollTicket(Signed::sign(identity, &poll))).await
    }

    /// Posts a cluster request signed by the job's key.
    pub async fn post_request(
        &self,
        job: &Identity,
        request: &ClusterRequest,
    ) -> Result<RequestPosted, ClientError> {
        self.call(&PostRequest(Signed::sign(job, request))).await
    }

    /// Waits up to `wait` for the request to change from `seen` workers.
    pub async fn watch(
        &self,
        request: &RequestId,
        seen: u32,
        wait: Duration,
    ) -> Result<RequestState, ClientError> {
        self.call(&WatchRequest {
            request: request.clone(),
            seen,
            wait_secs: wait.as_secs(),
        })
        .await
    }

    pub async fn withdraw(&self, job: &Identity, request: &RequestId) -> Result<(), ClientError> {
        let w = Withdrawal {
            request: request.clone(),
            issued_at: tormr_core::unix_now(),
        };
        self.call(&Withdraw(Signed::sign(job, &w)))
            .await
            .map(|_| ())
    }

    /// Reports, as `owner`, that `worker` lied in one of her jobs: the board
    /// matches it with none of her later requests.
    pub async fn ban(
        &self,
        owner: &Identity,
        worker: &PublicKey,
        reason: &str,
    ) -> Result<(), ClientError> {
        let reason: String = reason
            .char_indices()
            .take_while(|(i, c)| i + c.len_utf8() <= Ban::MAX_REASON)
            .map(|(_, c)| c)
            .collect();
        let ban = Ban {
            worker: *worker,
            issued_at: tormr_core::unix_now(),
            reason,
        };
        self.call(&PostBan(Signed::sign(owner, &ban)))
            .await
            .map(|_| ())
    }
}
