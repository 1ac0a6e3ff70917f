//! The bulletin's HTTP handler: checks signatures, runs the board, persists
//! every change, and answers long-polls when the board moves.

use crate::board::{
    BanRecord, Board, BoardConfig, BoardError, Dirty, Entries, Request, Volunteer, VolunteerState,
};
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
    BoardInfo, PollTicket, PostBan, PostRequest, Register, Registered, RequestPosted, RequestState,
    TicketAnswer, Withdraw,
};
use tormr_core::wire::{Ack, MAX_WAIT_SECS};
use tormr_net::body::{self, Body, BodyError, read_json};
use tormr_net::{ApiError, Handler};

const VOL_PREFIX: &str = "bulletin/vol/";
const REQ_PREFIX: &str = "bulletin/req/";
const BAN_PREFIX: &str = "bulletin/ban/";
/// Bumped by every write: replicas sharing one store compare-and-set it, so a
/// replica whose board is behind finds out, reloads, and redoes its change.
const GENERATION_KEY: &str = "bulletin/generation";
/// The board's signing key, when replicas share it through the store.
const IDENTITY_KEY: &str = "bulletin/identity";
/// Largest control message a board accepts.
const MAX_BODY: u64 = 64 * 1024;
/// Times a change is redone after other replicas moved the board under it.
const MAX_CONFLICTS: u32 = 40;

/// The board in memory and the store generation it reflects.
struct Replica {
    board: Board,
    generation: u64,
}

pub struct Bulletin {
    replica: Mutex<Replica>,
    store: Arc<dyn Store>,
    /// Bumped on every change; long-polls wait on it.
    version: watch::Sender<u64>,
    /// One change at a time, so writes land in the order changes happened.
    writer: tokio::sync::Mutex<()>,
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
    match e {
        StoreError::Unavailable(_) => ApiError::busy(format!("{e}; try again shortly")),
        other => ApiError::internal("the board's store", other),
    }
}

/// Everything the store holds of a board: its generation and entries.
struct Snapshot {
    generation: u64,
    entries: Entries,
}

async fn generation(store: &dyn Store) -> Result<u64, StoreError> {
    Ok(store.get_json(GENERATION_KEY).await?.unwrap_or(0))
}

async fn snapshot(store: &dyn Store) -> Result<Snapshot, StoreError> {
    // The generation first: entries read after it are at least that new, and
    // if they are newer the next compare-and-set fails and reloads again.
    let generation = generation(store).await?;
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
    let bans: Vec<(String, BanRecord)> = store.scan_json(BAN_PREFIX).await?;
    Ok(Snapshot {
        generation,
        entries: Entries {
            volunteers,
            requests: requests.into_iter().map(|(_, r)| r).collect(),
            bans: bans.into_iter().map(|(_, b)| b).collect(),
        },
    })
}

/// The board key replicas share: the one in the store, or `mine`, stored
/// there for the others if the store has none yet.
pub async fn shared_identity(store: &dyn Store, mine: Identity) -> Result<Identity, StoreError> {
    loop {
        if let Some(hex_key) = store.get_json::<String>(IDENTITY_KEY).await? {
            let bytes: [u8; 32] = hex::decode(&hex_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: IDENTITY_KEY.into(),
                    why: "not a 32-byte hex key".into(),
                })?;
            return Ok(Identity::from_secret_bytes(bytes));
        }
        let hex_key = hex::encode(mine.secret_bytes());
        let first = store
            .apply(
                Batch::new()
                    .put_json(IDENTITY_KEY, &hex_key)
                    .require_absent(IDENTITY_KEY),
            )
            .await?;
        if first {
            return Ok(mine);
        }
    }
}

impl Bulletin {
    /// Opens a board over `store`, restoring whatever it held. Several
    /// bulletins may open one shared store (etcd) with the same identity:
    /// they serve one board.
    pub async fn open(
        store: Arc<dyn Store>,
        identity: Identity,
        config: BoardConfig,
    ) -> Result<Arc<Self>, StoreError> {
        let snap = snapshot(store.as_ref()).await?;
        let board = Board::restore(identity, config, snap.entries);
        let (version, _) = watch::channel(0);
        Ok(Arc::new(Bulletin {
            replica: Mutex::new(Replica {
                board,
                generation: snap.generation,
            }),
            store,
            version,
            writer: tokio::sync::Mutex::new(()),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn key(&self) -> PublicKey {
        self.lock().board.key()
    }

    /// Loads the board anew from the store if another replica changed it.
    async fn catch_up(&self) -> Result<(), StoreError> {
        let stored = generation(self.store.as_ref()).await?;
        if stored != self.lock().generation {
            self.reload().await?;
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let snap = snapshot(self.store.as_ref()).await?;
        {
            let mut replica = self.lock();
            replica.board.replace_entries(snap.entries);
            replica.generation = snap.generation;
        }
        tracing::debug!("board reloaded at generation {}", snap.generation);
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    /// The changed entries as one batch that applies only if the store is
    /// still at the generation this board reflects.
    fn dirty_batch(replica: &mut Replica) -> Batch {
        let mut batch = Batch::new();
        for d in replica.board.take_dirty() {
            match d {
                Dirty::Volunteer(pk) => {
                    let key = format!("{VOL_PREFIX}{}", pk.to_text());
                    batch = match replica.board.volunteer(&pk) {
                        Some(v) => batch.put_json(key, v),
                        None => batch.delete(key),
                    };
                }
                Dirty::Request(id) => {
                    let key = format!("{REQ_PREFIX}{id}");
                    batch = match replica.board.request(&id) {
                        Some(r) => batch.put_json(key, r),
                        None => batch.delete(key),
                    };
                }
                Dirty::Ban(owner, worker) => {
                    let key = format!("{BAN_PREFIX}{}/{}", owner.to_text(), worker.to_text());
                    batch = match replica.board.ban_record(&owner, &worker) {
                        Some(b) => batch.put_json(key, b),
                        None => batch.delete(key),
                    };
                }
            }
        }
        if batch.is_empty() {
            return batch;
        }
        let batch = match replica.generation {
            0 => batch.require_absent(GENERATION_KEY),
            g => batch.require_equal(GENERATION_KEY, g.to_string().into_bytes()),
        };
        batch.put_json(GENERATION_KEY, &(replica.generation + 1))
    }

    /// Applies `change` to the board and persists what it changed. If another
    /// replica moved the shared store meanwhile, the board is reloaded and
    /// the change redone on it, so no replica overwrites another's work.
    async fn change<T>(
        &self,
        change: impl Fn(&mut Board, u64) -> Result<T, BoardError>,
    ) -> Result<T, ApiError> {
        let _one_at_a_time = self.writer.lock().await;
        // Cheap on a store of one's own; on a shared one it spares a stale
        // answer (a request posted through another replica, say).
        self.catch_up().await.map_err(store_error)?;
        for attempt in 0..MAX_CONFLICTS {
            let (outcome, batch) = {
                let mut replica = self.lock();
                let outcome = change(&mut replica.board, tormr_core::unix_now());
                (outcome, Self::dirty_batch(&mut replica))
            };
            let wrote = !batch.is_empty();
            let applied = !wrote
                || match self.store.apply(batch).await {
                    Ok(applied) => applied,
                    Err(e) => {
                        // The board is ahead of the store now: go back to it.
                        let _ = self.reload().await;
                        return Err(store_error(e));
                    }
                };
            if applied {
                if wrote {
                    self.lock().generation += 1;
                    self.version.send_modify(|v| *v += 1);
                }
                return outcome.map_err(board_error);
            }
            // Back off a random while, longer each time, so that replicas
            // racing for the board take turns instead of failing together.
            let cap_ms = 2 + u64::from(attempt.min(10)) * 5;
            let pause = u64::from_le_bytes(tormr_core::random::bytes::<8>()) % cap_ms;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            self.reload().await.map_err(store_error)?;
        }
        Err(ApiError::busy(
            "the board is changing too fast (other replicas keep moving it); try again",
        ))
    }

    /// Expires, matches and follows other replicas once a second until cancelled.
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
                // `change` catches up with other replicas first.
                if let Err(e) = this
                    .change(|board, now| {
                        board.tick(now);
                        Ok(())
                    })
                    .await
                {
                    tracing::warn!("bulletin could not persist its board: {}", e.message);
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
            .change(|board, now| board.register(msg.0.signer, registration.clone(), now))
            .await?;
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
        let pseudonym = msg.0.signer;
        let mut changes = self.version.subscribe();
        let poll_now = || self.change(|board, now| board.poll(&pseudonym, poll.issued_at, now));
        // The first poll keeps the registration alive; later wake-ups only
        // look, and poll again once there is something to collect.
        let answer = poll_now().await?;
        if !matches!(answer, TicketAnswer::Waiting) {
            return Ok(answer);
        }
        loop {
            changes.borrow_and_update();
            let ready = match self.lock().board.volunteer(&pseudonym) {
                None => true,
                Some(v) => matches!(v.state, VolunteerState::Ticketed(_)),
            };
            if ready {
                let answer = poll_now().await?;
                if !matches!(answer, TicketAnswer::Waiting) {
                    return Ok(answer);
                }
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
            .change(|board, now| board.post(msg.0.signer, request.clone(), digest.clone(), now))
            .await?;
        tracing::info!("cluster request {id} posted");
        Ok(RequestPosted {
            request: id,
            board: self.key(),
        })
    }

    async fn watch(&self, id: RequestId, seen: u32, wait: u64) -> Result<RequestState, ApiError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.min(MAX_WAIT_SECS));
        let mut changes = self.version.subscribe();
        if self.lock().board.state(&id).is_none() {
            // Posted through another replica a moment ago?
            self.catch_up().await.map_err(store_error)?;
        }
        loop {
            changes.borrow_and_update();
            let state = self.lock().board.state(&id).ok_or_else(|| {
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
        self.change(|board, now| board.withdraw(&msg.0.signer, &w.request, w.issued_at, now))
            .await?;
        Ok(Ack {})
    }

    async fn ban(&self, msg: PostBan) -> Result<Ack, ApiError> {
        let ban = msg
            .0
            .open()
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let (owner, worker) = (msg.0.signer, ban.worker);
        self.change(|board, now| board.ban(owner, ban.clone(), now))
            .await?;
        tracing::info!(
            "owner {} banned worker {} from her requests",
            owner.short(),
            worker.short()
        );
        Ok(Ack {})
    }

    fn info(&self) -> BoardInfo {
        let replica = self.lock();
        let board = &replica.board;
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
            (http::Method::POST, ["v1", "bans"]) => {
                let msg = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&self.ban(msg).await?))
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
