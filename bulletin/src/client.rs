//! What volunteers and owners call on a bulletin board.

use std::time::Duration;
use tormr_core::identity::PublicKey;
use tormr_core::identity::{Identity, Signed};
use tormr_core::ids::RequestId;
use tormr_core::wire::bulletin::{
    BoardInfo, Capabilities, ClusterRequest, GetBoard, PollTicket, PostRequest, Register,
    Registered, Registration, RequestPosted, RequestState, TicketAnswer, TicketPoll, WatchRequest,
    Withdraw, Withdrawal,
};
use tormr_net::{ClientError, HttpClient};

#[derive(Clone)]
pub struct BulletinClient {
    http: HttpClient,
}

impl BulletinClient {
    pub fn new(http: HttpClient) -> Self {
        BulletinClient { http }
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    pub async fn info(&self) -> Result<BoardInfo, ClientError> {
        self.http.call(&GetBoard).await
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
        self.http
            .call(&Register(Signed::sign(identity, &registration)))
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
        self.http
            .call(&PollTicket(Signed::sign(identity, &poll)))
            .await
    }

    /// Posts a cluster request signed by the job's key.
    pub async fn post_request(
        &self,
        job: &Identity,
        request: &ClusterRequest,
    ) -> Result<RequestPosted, ClientError> {
        self.http
            .call(&PostRequest(Signed::sign(job, request)))
            .await
    }

    /// Waits up to `wait` for the request to change from `seen` workers.
    pub async fn watch(
        &self,
        request: &RequestId,
        seen: u32,
        wait: Duration,
    ) -> Result<RequestState, ClientError> {
        self.http
            .call(&WatchRequest {
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
        self.http
            .call(&Withdraw(Signed::sign(job, &w)))
            .await
            .map(|_| ())
    }
}
