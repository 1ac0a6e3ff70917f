//! Messages of the bulletin board: volunteers register and wait for tickets,
//! owners post signed cluster requests and wait for their match.

use super::{Ack, Call, Method, clamp_wait};
use crate::identity::{PublicKey, Signed, SignedPayload};
use crate::ids::{RequestId, TicketId};
use crate::wire::job::OwnerEndorsement;
use serde::{Deserialize, Serialize};

/// How a worker can run job code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// A child process on the volunteer's machine: only for the volunteer's own jobs.
    Process,
    /// A sandboxed Docker container.
    Docker,
}

/// What a volunteer offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub cores: u32,
    pub memory_mb: u64,
    pub executors: Vec<ExecutorKind>,
}

/// A volunteer's registration, signed by its pseudonym.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub capabilities: Capabilities,
    /// The owner key this worker serves as a fully trusted worker, if any.
    #[serde(default)]
    pub trusted_by: Option<PublicKey>,
    /// The key a restricted job master must list to let this worker discover
    /// it (onion restricted discovery, `descriptor:x25519:…`).
    #[serde(default)]
    pub discovery_key: Option<String>,
    pub issued_at: u64,
}

/// Longest discovery key a board accepts.
pub const MAX_DISCOVERY_KEY: usize = 128;

impl SignedPayload for Registration {
    const DOMAIN: &'static str = "tormr/bulletin/registration/v1";
}

/// `POST /v1/volunteers`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Register(pub Signed<Registration>);

impl Call for Register {
    type Response = Registered;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/volunteers".into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registered {
    /// Seconds until the registration lapses unless the volunteer polls again.
    pub ttl_secs: u64,
    pub board: PublicKey,
}

/// A volunteer asking whether it was matched, signed so nobody else can take its ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPoll {
    pub issued_at: u64,
    pub wait_secs: u64,
}

impl SignedPayload for TicketPoll {
    const DOMAIN: &'static str = "tormr/bulletin/ticket-poll/v1";
}

/// `POST /v1/volunteers/poll` (long-poll)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollTicket(pub Signed<TicketPoll>);

impl Call for PollTicket {
    type Response = TicketAnswer;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/volunteers/poll".into()
    }
    fn hold_secs(&self) -> u64 {
        serde_json::from_str::<TicketPoll>(&self.0.payload)
            .map(|p| clamp_wait(p.wait_secs))
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum TicketAnswer {
    /// Matched: go and join.
    Ticket { ticket: Signed<JoinTicket> },
    /// Still registered and waiting.
    Waiting,
    /// The board does not know this pseudonym (lapsed or never registered): register again.
    Unregistered,
}

/// A board's permission for one worker to join one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTicket {
    pub ticket: TicketId,
    pub request: RequestId,
    pub job_key: PublicKey,
    pub job_address: String,
    pub worker: PublicKey,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl SignedPayload for JoinTicket {
    const DOMAIN: &'static str = "tormr/bulletin/join-ticket/v1";
}

/// What workers a request needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    pub min_cores: u32,
    pub min_memory_mb: u64,
    /// Executor every matched worker must offer.
    pub executor: Option<ExecutorKind>,
    /// Only workers trusted by this owner key (the owner's own workers).
    #[serde(default)]
    pub trusted_by: Option<PublicKey>,
    /// The owner's own workers (started `--trusted-by` her key) to match
    /// besides `workers`, when they are idle, to settle disputes. The board
    /// matches a named worker only if its registration names the key that
    /// endorsed the request. At most [`Requirements::MAX_ARBITERS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arbiters: Vec<PublicKey>,
}

impl Requirements {
    pub const MAX_ARBITERS: usize = 16;
}

/// An owner's request for a cluster, signed by the job's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRequest {
    pub job_address: String,
    pub workers: u32,
    /// Fewest workers the owner accepts once `wait_secs` has passed.
    pub min_workers: u32,
    pub wait_secs: u64,
    pub requirements: Requirements,
    pub issued_at: u64,
    /// The owner's long-term key vouching for the job key: the board then
    /// matches the request with none of the pseudonyms she banned. It links
    /// her requests for the board; an owner who will not have that leaves it
    /// out (a fresh state folder gives a fresh key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Signed<OwnerEndorsement>>,
}

impl SignedPayload for ClusterRequest {
    const DOMAIN: &'static str = "tormr/bulletin/cluster-request/v1";
}

/// `POST /v1/requests`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostRequest(pub Signed<ClusterRequest>);

impl Call for PostRequest {
    type Response = RequestPosted;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/requests".into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestPosted {
    pub request: RequestId,
    pub board: PublicKey,
}

/// `GET /v1/requests/{id}?wait=N` (long-poll until the state changes)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchRequest {
    pub request: RequestId,
    /// The number of workers the caller last saw; the call returns when it changes.
    pub seen: u32,
    pub wait_secs: u64,
}

impl Call for WatchRequest {
    type Response = RequestState;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        format!(
            "/v1/requests/{}?seen={}&wait={}",
            self.request,
            self.seen,
            clamp_wait(self.wait_secs)
        )
    }
    fn hold_secs(&self) -> u64 {
        clamp_wait(self.wait_secs)
    }
}

/// A worker matched to a request, as its owner learns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MatchedWorker {
    pub pseudonym: PublicKey,
    /// The key to list so the worker can discover the job master.
    pub discovery_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum RequestState {
    Gathering { have: u32, wanted: u32 },
    Matched { workers: Vec<MatchedWorker> },
    Expired { have: u32 },
    Withdrawn,
}

/// An owner withdrawing a request (job done or abandoned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub request: RequestId,
    pub issued_at: u64,
}

impl SignedPayload for Withdrawal {
    const DOMAIN: &'static str = "tormr/bulletin/withdrawal/v1";
}

/// `POST /v1/requests/withdraw`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Withdraw(pub Signed<Withdrawal>);

impl Call for Withdraw {
    type Response = Ack;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/requests/withdraw".into()
    }
}

/// An owner's word that a pseudonym's answer in one of her jobs was found
/// wrong: the board matches it with none of her later requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub worker: PublicKey,
    pub issued_at: u64,
    /// For the board's operator; at most [`Ban::MAX_REASON`] bytes.
    pub reason: String,
}

impl Ban {
    pub const MAX_REASON: usize = 256;
}

impl SignedPayload for Ban {
    const DOMAIN: &'static str = "tormr/bulletin/ban/v1";
}

/// `POST /v1/bans`, signed by the owner's long-term key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostBan(pub Signed<Ban>);

impl Call for PostBan {
    type Response = Ack;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/bans".into()
    }
}

/// `GET /v1/board`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetBoard;

impl Call for GetBoard {
    type Response = BoardInfo;
    const METHOD: Method = Method::Get;
    fn path(&self) -> String {
        "/v1/board".into()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BoardInfo {
    pub board: PublicKey,
    pub version: String,
    pub volunteers: u32,
    pub open_requests: u32,
}
