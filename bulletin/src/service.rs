//! The bulletin's HTTP handler: checks signatures, runs the board, persists
//! every change, and answers long-polls when the board moves.

use crate::board::{Board, BoardConfig, BoardError, Dirty, Request, Volunteer};
use async_trait::async_trait;
use http::{Request as HttpRequest, Response};
use hyper::body::Incoming;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tormr_core::encoding::Digest;
use tormr_core::identity::{Identity, PublicKey};
use tormr_core::ids::RequestId;
use tormr_core::store::{Batch, Store, StoreError, StoreExt};
use tormr_core::wire::bulletin::{
    BoardInfo, PollTicket, PostRequest, Register, Registered, RequestPosted, RequestState,
    TicketAnswer, Withdraw,
};
use tormr_core::wire::{Ack, MAX_WAIT_SECS};
use tormr_net::body::{self, Body, BodyError, read_json};
use tormr_net::{ApiError, Handler};

const VOL_PREFIX: &str = "bulletin/vol/";
const REQ_PREFIX: &str = "bulletin/req/";
/// Largest control message a board accepts.
const MAX_BODY: u64 = 64 * 1024;

pub struct Bulletin {
    board: Mutex<Board>,
    store: Arc<dyn Store>,
    /// Bumped on every change; long-polls wait on it.
    version: watch::Sender<u64>,
    /// Serialises persistence so writes land in the order changes happened.
    persist: tokio::sync::Mutex<()>,
}

fn board_error(e: BoardError) -> ApiError {
    match e {
        BoardError::Full { .. } => ApiError::busy(e.to_string()),
        BoardError::UnknownRequest(_) => ApiError::not_found(e.to_string()),
        BoardError::NotOwner(_) => ApiError::forbidden(e.to_string()),
        BoardError::Stale { .. } => ApiError::unauthorized(e.to_string()),
        BoardError::Invalid(_) => ApiError::bad_request(e.to_string()),
    }
}

fn json_error(e: BodyError) -> ApiError {
    match e {
        BodyError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        BodyError::Stalled { .. } => ApiError::timeout(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::internal("the board's store", e)
}

impl Bulletin {
    /// Opens a board over `store`, restoring whatever it held.
    pub async fn open(
        store: Arc<dyn Store>,
        identity: Identity,
        config: BoardConfig,
    ) -> Result<Arc<Self>, StoreError> {
        let volunteers: Vec<(String, Volunteer)> = store.scan_json(VOL_PREFIX).await?;
        let volunteers = volunteers
            .into_iter()
            .filter_map(|(k, v)| {
                PublicKey::parse(k.trim_start_matches(VOL_PREFIX))
                    .ok()
                    .map(|pk| (pk, v))
            })
            .collect();
        let requests: Vec<(String, Request)> = store.scan_json(REQ_PREFIX).await?;
        let board = Board::restore(
            identity,
            config,
            volunteers,
            requests.into_iter().map(|(_, r)| r).collect(),
        );
        let (version, _) = watch::channel(0);
        Ok(Arc::new(Bulletin {
            board: Mutex::new(board),
            store,
            version,
            persist: tokio::sync::Mutex::new(()),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn key(&self) -> PublicKey {
        self.lock().key()
    }

    /// Writes changed entries to the store and wakes long-polls.
    async fn persist(&self) -> Result<(), StoreError> {
        let _order = self.persist.lock().await;
        let batch = {
            let mut board = self.lock();
            let mut batch = Batch::new();
            for d in board.take_dirty() {
                match d {
                    Dirty::Volunteer(pk) => {
                        let key = format!("{VOL_PREFIX}{}", pk.to_text());
                        batch = match board.volunteer(&pk) {
                            Some(v) => batch.put_json(key, v),
                            None => batch.delete(key),
                        };
                    }
                    Dirty::Request(id) => {
                        let key = format!("{REQ_PREFIX}{id}");
                        batch = match board.request(&id) {
                            Some(r) => batch.put_json(key, r),
                            None => batch.delete(key),
                        };
                    }
                }
            }
            batch
        };
        if !batch.is_empty() {
            self.store.apply(batch).await?;
            self.version.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// Expires and matches once a second until cancelled.
    pub fn spawn_ticker(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = every.tick() => {}
                }
                this.lock().tick(tormr_core::unix_now());
                if let Err(e) = this.persist().await {
                    tracing::error!("bulletin could not persist its board: {e}");
                }
            }
        })
    }

    async fn register(&self, msg: Register) -> Result<Registered, ApiError> {
        let registration = msg
            .0
            .open()
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let ttl = self
            .lock()
            .register(msg.0.signer, registration, tormr_core::unix_now())
            .map_err(board_error)?;
        self.persist().await.map_err(store_error)?;
        tracing::debug!("volunteer {} registered", msg.0.signer.short());
        Ok(Registered {
            ttl_secs: ttl,
            board: self.key(),
        })
    }

    async fn poll(&self, msg: PollTicket) -> Result<TicketAnswer, ApiError> {
        let poll = msg
            .0
            .open()
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(poll.wait_secs.min(MAX_WAIT_SECS));
        let mut changes = self.version.subscribe();
        loop {
            let answer = self
                .lock()
                .poll(&msg.0.signer, poll.issued_at, tormr_core::unix_now())
                .map_err(board_error)?;
            self.persist().await.map_err(store_error)?;
            if !matches!(answer, TicketAnswer::Waiting) {
                return Ok(answer);
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Ok(TicketAnswer::Waiting);
            }
        }
    }

    async fn post(&self, msg: PostRequest) -> Result<RequestPosted, ApiError> {
        let request = msg
            .0
            .open()
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let digest = Digest::of(msg.0.payload.as_bytes()).to_hex();
        let id = self
            .lock()
            .post(msg.0.signer, request, digest, tormr_core::unix_now())
            .map_err(board_error)?;
        self.persist().await.map_err(store_error)?;
        tracing::info!("cluster request {id} posted");
        Ok(RequestPosted {
            request: id,
            board: self.key(),
        })
    }

    async fn watch(&self, id: RequestId, seen: u32, wait: u64) -> Result<RequestState, ApiError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.min(MAX_WAIT_SECS));
        let mut changes = self.version.subscribe();
        loop {
            let state = self.lock().state(&id).ok_or_else(|| {
                ApiError::not_found(format!("request {id} is unknown to this board"))
            })?;
            let moved = !matches!(state, RequestState::Gathering { have, .. } if have == seen);
            if moved
                || tokio::time::timeout_at(deadline, changes.changed())
                    .await
                    .is_err()
            {
                return Ok(state);
            }
        }
    }

    async fn withdraw(&self, msg: Withdraw) -> Result<Ack, ApiError> {
        let w = msg
            .0
            .open()
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        self.lock()
            .withdraw(
                &msg.0.signer,
                &w.request,
                w.issued_at,
                tormr_core::unix_now(),
            )
            .map_err(board_error)?;
        self.persist().await.map_err(store_error)?;
        Ok(Ack {})
    }

    fn info(&self) -> BoardInfo {
        let board = self.lock();
        BoardInfo {
            board: board.key(),
            version: env!("CARGO_PKG_VERSION").into(),
            volunteers: board.volunteer_count(),
            open_requests: board.open_request_count(),
        }
    }

    fn metrics(&self) -> Response<Body> {
        let info = self.info();
        let text = format!(
            "# TYPE tormr_bulletin_volunteers gauge\ntormr_bulletin_volunteers {}\n# TYPE tormr_bulletin_open_requests gauge\ntormr_bulletin_open_requests {}\n",
            info.volunteers, info.open_requests
        );
        let mut resp = Response::new(body::full(text));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        resp
    }
}

fn query(uri: &http::Uri, name: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

#[async_trait]
impl Handler for Bulletin {
    async fn handle(&self, request: HttpRequest<Incoming>) -> Result<Response<Body>, ApiError> {
        let idle = Duration::from_secs(30);
        let path = request.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method().clone(), parts.as_slice()) {
            (http::Method::GET, ["v1", "board"]) => Ok(body::json_body(&self.info())),
            (http::Method::GET, ["metrics"]) => Ok(self.metrics()),
            (http::Method::POST, ["v1", "volunteers"]) => {
                let msg = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&self.register(msg).await?))
            }
            (http::Method::POST, ["v1", "volunteers", "poll"]) => {
                let msg = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&self.poll(msg).await?))
            }
            (http::Method::POST, ["v1", "requests"]) => {
                let msg = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&self.post(msg).await?))
            }
            (http::Method::POST, ["v1", "requests", "withdraw"]) => {
                let msg = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&self.withdraw(msg).await?))
            }
            (http::Method::GET, ["v1", "requests", id]) => {
                let id = RequestId::parse(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
                let seen = query(request.uri(), "seen").unwrap_or(0) as u32;
                let wait = query(request.uri(), "wait").unwrap_or(0);
                Ok(body::json_body(&self.watch(id, seen, wait).await?))
            }
            _ => Err(ApiError::not_found(format!("no such endpoint {path}"))),
        }
    }
}
