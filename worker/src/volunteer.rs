//! The volunteer's main loop: register with the board, wait for a ticket,
//! join the job, work until it is done, and start over.

use crate::config::WorkerConfig;
use crate::executor::Executor;
use crate::executor::process::ProcessExecutor;
use crate::images::JobMasterChunks;
use crate::sandbox::Sandbox;
use crate::session::{SessionEnd, keep_alive, run_session};
use crate::standing::JobStanding;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_bulletin::BulletinClient;
use tormr_core::identity::{Identity, PublicKey, Signed};
use tormr_core::wire::bulletin::{Capabilities, ExecutorKind, JoinTicket, TicketAnswer};
use tormr_core::wire::job::{Join, JoinProof, Joined, OwnerEndorsement};
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

/// One volunteer: an identity, the ways it can run job code, a board to
/// find work on.
pub struct Volunteer {
    pub config: WorkerConfig,
    pub identity: Arc<Identity>,
    pub transport: Arc<dyn Transport>,
    pub bulletin: BulletinClient,
    /// Containers, for jobs that name an image; `None` without an engine.
    pub sandbox: Option<Arc<Sandbox>>,
    /// Plain processes, for jobs that name no image: local mode, or a
    /// volunteer who said `--allow-unsandboxed-jobs`.
    pub unsandboxed: Option<Arc<dyn Executor>>,
}

/// The job setting that turns container reuse off (`false`).
pub const REUSE_CONTAINERS: &str = "tormr.container.reuse";

/// How long a matched worker keeps trying to reach its job master.
const JOIN_PATIENCE: Duration = Duration::from_secs(180);

/// How often to re-register while waiting (well inside the board's TTL).
const REFRESH: Duration = Duration::from_secs(30);

impl Volunteer {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cores: self.config.slots,
            memory_mb: self.config.memory_mb,
            executors: self.executor_kinds(),
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
            let standing = ticket.open().ok().map(|t| JobStanding {
                bulletin: self.bulletin.clone(),
                request: t.request,
            });
            let end = match self.join(ticket).await {
                Ok((jm, joined, job_key)) => {
                    tracing::info!("joined job {}", joined.job);
                    let executor = tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        e = keep_alive(
                            &jm,
                            joined.heartbeat_secs,
                            self.executor_for(&jm, &joined, &job_key),
                        ) => e,
                    };
                    match (executor, self.data_client(&joined)) {
                        (Ok(executor), Ok(data)) => {
                            run_session(
                                jm,
                                data,
                                joined,
                                executor,
                                self.config.clone(),
                                standing,
                                stop.clone(),
                            )
                            .await
                        }
                        (Err(why), _) => SessionEnd::Lost(why),
                        (_, Err(e)) => SessionEnd::Lost(e.to_string()),
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
                        // Quiet for the first seconds (Tor is still warming up), then
                        // said every ~30 s so an operator sees why nothing happens.
                        if backoff >= Duration::from_secs(10) {
                            tracing::info!(
                                "the bulletin is unreachable, retrying in {} s: {e}",
                                backoff.as_secs()
                            );
                        } else {
                            tracing::debug!("bulletin unreachable, retrying: {e}");
                        }
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
                    if backoff >= Duration::from_secs(10) {
                        tracing::info!(
                            "the bulletin is unreachable while waiting for a ticket, retrying in {} s: {e}",
                            backoff.as_secs()
                        );
                    }
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
    async fn join(
        &self,
        ticket: Signed<JoinTicket>,
    ) -> Result<(HttpClient, Joined, PublicKey), WorkerError> {
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
                Ok(joined) => return Ok((http.with_bearer(&joined.session), joined, t.job_key)),
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

    fn executor_kinds(&self) -> Vec<ExecutorKind> {
        let mut kinds = Vec::new();
        if self.sandbox.is_some() {
            kinds.push(ExecutorKind::Docker);
        }
        if self.unsandboxed.is_some() || self.config.trusted_by.is_some() {
            kinds.push(ExecutorKind::Process);
        }
        kinds
    }

    /// How this worker will run the joined job's code: in containers of its
    /// image (fetched through the job master unless cached), or as plain
    /// processes if the job names no image and this worker allows that.
    async fn executor_for(
        &self,
        jm: &HttpClient,
        joined: &Joined,
        job_key: &PublicKey,
    ) -> Result<Arc<dyn Executor>, String> {
        let Some(image) = &joined.spec.image else {
            // The volunteer's own owner's job: her code, her machine.
            if let Some(owner) = &self.config.trusted_by
                && OwnerEndorsement::vouches(joined.endorsement.as_ref(), owner, job_key)
            {
                return Ok(Arc::new(ProcessExecutor));
            }
            return self.unsandboxed.clone().ok_or_else(|| {
                "the job names no container image, so its code would run unsandboxed on this \
                 machine; this worker runs other people's code only in containers (start it \
                 with --allow-unsandboxed-jobs to accept such jobs, and only if you trust them \
                 completely; jobs endorsed by the owner key of --trusted-by are run too)"
                    .to_owned()
            });
        };
        let Some(sandbox) = &self.sandbox else {
            return Err(format!(
                "the job runs in the container image {:?}, and this worker has no Docker engine",
                image.name
            ));
        };
        let source = JobMasterChunks {
            lanes: self.lanes(jm.address(), Some(&joined.session)),
        };
        let last = std::sync::Mutex::new(std::time::Instant::now());
        let progress = |done: u64, total: u64| {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if done == total || last.elapsed() > Duration::from_secs(3) {
                *last = std::time::Instant::now();
                tracing::info!(
                    "fetching the job's image: {} of {} MiB",
                    done >> 20,
                    total.div_ceil(1 << 20)
                );
            }
        };
        // `-D tormr.container.reuse=false`: a fresh container for every run.
        let keep = joined
            .spec
            .conf
            .get(REUSE_CONTAINERS)
            .is_none_or(|v| v != "false");
        sandbox
            .executor(image, &source, &progress, keep)
            .await
            .map_err(|e| format!("the job's image: {e}"))
    }

    /// Clients for parallel bulk transfers to `address`: over Tor each lane
    /// is its own circuit; on loopback one lane is enough.
    fn lanes(&self, address: &Address, bearer: Option<&str>) -> Vec<HttpClient> {
        let client = |transport| {
            let c = HttpClient::new(transport, address.clone());
            match bearer {
                Some(b) => c.with_bearer(b),
                None => c,
            }
        };
        match self.transport.isolated() {
            Some(_) => (0..self.config.data_lanes.max(1))
                .map(|_| {
                    client(
                        self.transport
                            .isolated()
                            .unwrap_or_else(|| self.transport.clone()),
                    )
                })
                .collect(),
            None => vec![client(self.transport.clone())],
        }
    }

    fn data_client(&self, joined: &Joined) -> Result<DataClient, WorkerError> {
        let address = Address::parse(&joined.datalayer)
            .map_err(|e| WorkerError::Join(format!("the job's data layer address: {e}")))?;
        let lanes = self.lanes(&address, None);
        Ok(DataClient::new(lanes, joined.job.clone()))
    }
}
