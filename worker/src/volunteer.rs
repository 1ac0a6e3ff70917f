//! The volunteer's main loop: register with the board, wait for a ticket,
//! join the job, work until it is done, and start over.

use crate::config::WorkerConfig;
use crate::executor::Executor;
use crate::session::{SessionEnd, run_session};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_bulletin::BulletinClient;
use tormr_core::identity::{Identity, Signed};
use tormr_core::wire::bulletin::{Capabilities, JoinTicket, TicketAnswer};
use tormr_core::wire::job::{Join, JoinProof, Joined};
use tormr_datalayer::DataClient;
use tormr_net::{Address, ClientError, HttpClient, Transport};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("the bulletin refused this worker: {0}")]
    Refused(ClientError),
    #[error("could not join the job: {0}")]
    Join(String),
}

/// One volunteer: an identity, an executor, a board to find work on.
pub struct Volunteer {
    pub config: WorkerConfig,
    pub identity: Arc<Identity>,
    pub transport: Arc<dyn Transport>,
    pub bulletin: BulletinClient,
    pub executor: Arc<dyn Executor>,
}

/// How long a matched worker keeps trying to reach its job master.
const JOIN_PATIENCE: Duration = Duration::from_secs(180);

/// How often to re-register while waiting (well inside the board's TTL).
const REFRESH: Duration = Duration::from_secs(30);

impl Volunteer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cores: self.config.slots,
            memory_mb: self.config.memory_mb,
            executors: self.config.executors(self.executor.kind()),
        }
    }

    /// Works until `stop` fires (or after one job if configured so).
    pub async fn run(&self, stop: CancellationToken) -> Result<(), WorkerError> {
        tracing::info!("volunteer {} starting", self.identity.public().short());
        loop {
            let ticket = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                t = self.wait_for_ticket() => t?,
            };
            let end = match self.join(ticket).await {
                Ok((jm, joined)) => {
                    tracing::info!("joined job {}", joined.job);
                    match self.data_client(&joined) {
                        Ok(data) => {
                            run_session(
                                jm,
                                data,
                                joined,
                                self.executor.clone(),
                                self.config.clone(),
                                stop.clone(),
                            )
                            .await
                        }
                        Err(e) => SessionEnd::Lost(e.to_string()),
                    }
                }
                Err(e) => SessionEnd::Lost(e.to_string()),
            };
            match &end {
                SessionEnd::JobDone => tracing::info!("job finished"),
                SessionEnd::Lost(why) => tracing::warn!("left the job: {why}"),
                SessionEnd::Stopped => return Ok(()),
            }
            if self.config.once {
                return Ok(());
            }
        }
    }

    /// Registers and long-polls until matched.
    async fn wait_for_ticket(&self) -> Result<Signed<JoinTicket>, WorkerError> {
        let mut registered_at: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            if registered_at.is_none_or(|t| t.elapsed() > REFRESH) {
                match self
                    .bulletin
                    .register(
                        &self.identity,
                        self.capabilities(),
                        self.config.trusted_by,
                        self.transport.discovery_key(),
                    )
                    .await
                {
                    Ok(r) => {
                        if registered_at.is_none() {
                            tracing::info!(
                                "registered with the bulletin (board {})",
                                r.board.short()
                            );
                        }
                        registered_at = Some(tokio::time::Instant::now());
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) if e.is_retryable() => {
                        tracing::debug!("bulletin unreachable, retrying: {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                    Err(e) => return Err(WorkerError::Refused(e)),
                }
            }
            match self
                .bulletin
                .poll_ticket(&self.identity, self.config.poll_wait)
                .await
            {
                Ok(TicketAnswer::Ticket { ticket }) => match ticket.open() {
                    Ok(t) if t.worker == self.identity.public() => return Ok(ticket),
                    _ => tracing::warn!(
                        "the bulletin handed out a ticket that is not for this worker; ignoring it"
                    ),
                },
                Ok(TicketAnswer::Waiting) => {}
                Ok(TicketAnswer::Unregistered) => registered_at = None,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(WorkerError::Refused(e)),
            }
        }
    }

    /// Redeems a ticket at the job master it names. Over Tor a freshly
    /// matched job master may take a minute to publish its service, so
    /// unreachable is retried for up to three minutes.
    async fn join(&self, ticket: Signed<JoinTicket>) -> Result<(HttpClient, Joined), WorkerError> {
        let t = ticket
            .open()
            .map_err(|e| WorkerError::Join(e.to_string()))?;
        let address =
            Address::parse(&t.job_address).map_err(|e| WorkerError::Join(e.to_string()))?;
        let http = HttpClient::new(self.transport.clone(), address);
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let proof = JoinProof {
                ticket: t.ticket.clone(),
                job_key: t.job_key,
                issued_at: tormr_core::unix_now(),
            };
            let join = Join {
                ticket: ticket.clone(),
                proof: Signed::sign(&self.identity, &proof),
            };
            match http.call(&join).await {
                Ok(joined) => return Ok((http.with_bearer(&joined.session), joined)),
                Err(e) if e.is_retryable() && started.elapsed() < JOIN_PATIENCE => {
                    tracing::info!(
                        "waiting for the job master to come online ({} s): {e}",
                        started.elapsed().as_secs()
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(WorkerError::Join(e.to_string())),
            }
        }
    }

    fn data_client(&self, joined: &Joined) -> Result<DataClient, WorkerError> {
        let address = Address::parse(&joined.datalayer)
            .map_err(|e| WorkerError::Join(format!("the job's data layer address: {e}")))?;
        // Over Tor each lane is its own circuit; on loopback one lane is enough.
        let lanes: Vec<HttpClient> = match self.transport.isolated() {
            Some(_) => (0..self.config.data_lanes.max(1))
                .map(|_| {
                    HttpClient::new(
                        self.transport
                            .isolated()
                            .unwrap_or_else(|| self.transport.clone()),
                        address.clone(),
                    )
                })
                .collect(),
            None => vec![HttpClient::new(self.transport.clone(), address)],
        };
        Ok(DataClient::new(lanes, joined.job.clone()))
    }
}
