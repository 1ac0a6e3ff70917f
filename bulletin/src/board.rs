//! The board's state and its matching rules, with time passed in so tests can
//! drive it deterministically.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tormr_core::identity::{Identity, PublicKey, Signed};
use tormr_core::ids::{RequestId, TicketId};
use tormr_core::wire::bulletin::{
    ClusterRequest, JoinTicket, MAX_DISCOVERY_KEY, MatchedWorker, Registration, RequestState,
    TicketAnswer,
};

/// Tunables of a board.
#[derive(Debug, Clone)]
pub struct BoardConfig {
    /// A registration lapses this long after the volunteer's last poll.
    pub registration_ttl: u64,
    /// A ticket is valid this long after it is issued.
    pub ticket_ttl: u64,
    /// Finished requests are forgotten this long after they end.
    pub keep_finished: u64,
    /// Signed messages must be this fresh (both ways, for clock skew).
    pub freshness: u64,
    pub max_volunteers: usize,
    pub max_open_requests: usize,
    pub max_workers_per_request: u32,
    pub max_wait_secs: u64,
}

impl Default for BoardConfig {
    fn default() -> Self {
        BoardConfig {
            registration_ttl: 90,
            ticket_ttl: 600,
            keep_finished: 3600,
            freshness: 300,
            max_volunteers: 100_000,
            max_open_requests: 10_000,
            max_workers_per_request: 10_000,
            max_wait_secs: 24 * 3600,
        }
    }
}

/// Why the board refused something.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BoardError {
    #[error(
        "the message was signed {age} s from now; clocks must agree within {limit} s (check the system clock)"
    )]
    Stale { age: i64, limit: u64 },
    #[error("the board is full ({what}); try again later")]
    Full { what: &'static str },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("request {0} is unknown to this board")]
    UnknownRequest(String),
    #[error("only the job key that posted request {0} may withdraw it")]
    NotOwner(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum VolunteerState {
    Idle,
    /// Counted towards a request that is still gathering.
    Reserved(RequestId),
    /// Matched; the ticket waits for the volunteer's next poll.
    Ticketed(Signed<JoinTicket>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volunteer {
    pub registration: Registration,
    pub since: u64,
    pub last_seen: u64,
    pub state: VolunteerState,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Phase {
    Gathering,
    Matched,
    Expired,
    Withdrawn,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub job_key: PublicKey,
    pub request: ClusterRequest,
    pub posted_at: u64,
    pub workers: Vec<PublicKey>,
    /// Who was matched, with their discovery keys (kept after the volunteers
    /// collect their tickets and leave the board).
    #[serde(default)]
    pub matched: Vec<MatchedWorker>,
    pub phase: Phase,
    pub ended_at: Option<u64>,
    /// Digest of the signed payload, to recognise a re-post of the same request.
    pub payload_digest: String,
}

/// A changed entry, for the service to persist.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dirty {
    Volunteer(PublicKey),
    Request(RequestId),
}

/// The whole board.
pub struct Board {
    config: BoardConfig,
    identity: Identity,
    volunteers: HashMap<PublicKey, Volunteer>,
    requests: BTreeMap<RequestId, Request>,
    /// Posting order, which is matching order.
    order: Vec<RequestId>,
    dirty: BTreeSet<Dirty>,
}

impl Board {
    pub fn new(identity: Identity, config: BoardConfig) -> Self {
        Board {
            config,
            identity,
            volunteers: HashMap::new(),
            requests: BTreeMap::new(),
            order: Vec::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Rebuilds a board from persisted entries.
    pub fn restore(
        identity: Identity,
        config: BoardConfig,
        volunteers: Vec<(PublicKey, Volunteer)>,
        mut requests: Vec<Request>,
    ) -> Self {
        let mut board = Board::new(identity, config);
        requests.sort_by_key(|r| r.posted_at);
        for r in requests {
            board.order.push(r.id.clone());
            board.requests.insert(r.id.clone(), r);
        }
        board.volunteers = volunteers.into_iter().collect();
        board
    }

    pub fn key(&self) -> PublicKey {
        self.identity.public()
    }

    pub fn volunteer_count(&self) -> u32 {
        self.volunteers.len() as u32
    }

    pub fn open_request_count(&self) -> u32 {
        self.requests
            .values()
            .filter(|r| r.phase == Phase::Gathering)
            .count() as u32
    }

    pub fn volunteer(&self, key: &PublicKey) -> Option<&Volunteer> {
        self.volunteers.get(key)
    }

    pub fn request(&self, id: &RequestId) -> Option<&Request> {
        self.requests.get(id)
    }

    /// Entries changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<Dirty> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    fn fresh(&self, issued_at: u64, now: u64) -> Result<(), BoardError> {
        let age = now as i64 - issued_at as i64;
        if age.unsigned_abs() > self.config.freshness {
            return Err(BoardError::Stale {
                age,
                limit: self.config.freshness,
            });
        }
        Ok(())
    }

    /// Registers or refreshes a volunteer.
    pub fn register(
        &mut self,
        pseudonym: PublicKey,
        registration: Registration,
        now: u64,
    ) -> Result<u64, BoardError> {
        self.fresh(registration.issued_at, now)?;
        let caps = &registration.capabilities;
        if caps.cores == 0 || caps.executors.is_empty() {
            return Err(BoardError::Invalid(
                "a volunteer must offer at least one core and one executor".into(),
            ));
        }
        if let Some(key) = &registration.discovery_key
            && (key.len() > MAX_DISCOVERY_KEY || !key.starts_with("descriptor:x25519:"))
        {
            return Err(BoardError::Invalid(
                "discovery_key must be descriptor:x25519:<base32 key>".into(),
            ));
        }
        match self.volunteers.get_mut(&pseudonym) {
            Some(v) => {
                v.last_seen = now;
                v.registration = registration;
            }
            None => {
                if self.volunteers.len() >= self.config.max_volunteers {
                    return Err(BoardError::Full { what: "volunteers" });
                }
                self.volunteers.insert(
                    pseudonym,
                    Volunteer {
                        registration,
                        since: now,
                        last_seen: now,
                        state: VolunteerState::Idle,
                    },
                );
            }
        }
        self.dirty.insert(Dirty::Volunteer(pseudonym));
        self.run_matching(now);
        Ok(self.config.registration_ttl)
    }

    /// A volunteer's poll: hands out its ticket once, otherwise keeps it alive.
    pub fn poll(
        &mut self,
        pseudonym: &PublicKey,
        issued_at: u64,
        now: u64,
    ) -> Result<TicketAnswer, BoardError> {
        self.fresh(issued_at, now)?;
        let Some(v) = self.volunteers.get_mut(pseudonym) else {
            return Ok(TicketAnswer::Unregistered);
        };
        v.last_seen = now;
        self.dirty.insert(Dirty::Volunteer(*pseudonym));
        if let VolunteerState::Ticketed(ticket) = &v.state {
            let ticket = ticket.clone();
            // The volunteer goes to work; it registers again when it is done.
            self.volunteers.remove(pseudonym);
            return Ok(TicketAnswer::Ticket { ticket });
        }
        Ok(TicketAnswer::Waiting)
    }

    /// Posts a request signed by `job_key`; a re-post of the same signed
    /// request returns the original id.
    pub fn post(
        &mut self,
        job_key: PublicKey,
        request: ClusterRequest,
        payload_digest: String,
        now: u64,
    ) -> Result<RequestId, BoardError> {
        self.fresh(request.issued_at, now)?;
        if let Some(existing) = self
            .requests
            .values()
            .find(|r| r.payload_digest == payload_digest && r.job_key == job_key)
        {
            return Ok(existing.id.clone());
        }
        if request.workers == 0 || request.workers > self.config.max_workers_per_request {
            return Err(BoardError::Invalid(format!(
                "workers must be between 1 and {}",
                self.config.max_workers_per_request
            )));
        }
        if request.min_workers == 0 || request.min_workers > request.workers {
            return Err(BoardError::Invalid(
                "min_workers must be between 1 and workers".into(),
            ));
        }
        if request.wait_secs > self.config.max_wait_secs {
            return Err(BoardError::Invalid(format!(
                "wait_secs is at most {}",
                self.config.max_wait_secs
            )));
        }
        if request.job_address.is_empty() || request.job_address.len() > 255 {
            return Err(BoardError::Invalid(
                "job_address must be 1 to 255 characters".into(),
            ));
        }
        if self.open_request_count() as usize >= self.config.max_open_requests {
            return Err(BoardError::Full {
                what: "open requests",
            });
        }
        let id = RequestId::random();
        self.requests.insert(
            id.clone(),
            Request {
                id: id.clone(),
                job_key,
                request,
                posted_at: now,
                workers: Vec::new(),
                matched: Vec::new(),
                phase: Phase::Gathering,
                ended_at: None,
                payload_digest,
            },
        );
        self.order.push(id.clone());
        self.dirty.insert(Dirty::Request(id.clone()));
        self.run_matching(now);
        Ok(id)
    }

    pub fn state(&self, id: &RequestId) -> Option<RequestState> {
        let r = self.requests.get(id)?;
        Some(match r.phase {
            Phase::Gathering => RequestState::Gathering {
                have: r.workers.len() as u32,
                wanted: r.request.workers,
            },
            Phase::Matched => RequestState::Matched {
                workers: r.matched.clone(),
            },
            Phase::Expired => RequestState::Expired {
                have: r.workers.len() as u32,
            },
            Phase::Withdrawn => RequestState::Withdrawn,
        })
    }

    pub fn withdraw(
        &mut self,
        job_key: &PublicKey,
        id: &RequestId,
        issued_at: u64,
        now: u64,
    ) -> Result<(), BoardError> {
        self.fresh(issued_at, now)?;
        let r = self
            .requests
            .get_mut(id)
            .ok_or_else(|| BoardError::UnknownRequest(id.to_string()))?;
        if &r.job_key != job_key {
            return Err(BoardError::NotOwner(id.to_string()));
        }
        if r.phase == Phase::Gathering {
            let reserved = std::mem::take(&mut r.workers);
            self.release(&reserved);
        }
        if let Some(r) = self.requests.get_mut(id) {
            r.phase = Phase::Withdrawn;
            r.ended_at = Some(now);
        }
        self.dirty.insert(Dirty::Request(id.clone()));
        Ok(())
    }

    fn release(&mut self, workers: &[PublicKey]) {
        for w in workers {
            if let Some(v) = self.volunteers.get_mut(w)
                && matches!(v.state, VolunteerState::Reserved(_))
            {
                v.state = VolunteerState::Idle;
                self.dirty.insert(Dirty::Volunteer(*w));
            }
        }
    }

    /// Expires what is stale and matches what can be matched. Call it often.
    pub fn tick(&mut self, now: u64) {
        let ttl = self.config.registration_ttl;
        let lapsed: Vec<PublicKey> = self
            .volunteers
            .iter()
            .filter(|(_, v)| v.last_seen + ttl < now)
            .map(|(k, _)| *k)
            .collect();
        for key in lapsed {
            if let Some(VolunteerState::Reserved(rid)) =
                self.volunteers.get(&key).map(|v| v.state.clone())
                && let Some(r) = self.requests.get_mut(&rid)
            {
                r.workers.retain(|w| w != &key);
                self.dirty.insert(Dirty::Request(rid));
            }
            self.volunteers.remove(&key);
            self.dirty.insert(Dirty::Volunteer(key));
        }
        let keep = self.config.keep_finished;
        let forgotten: Vec<RequestId> = self
            .requests
            .values()
            .filter(|r| r.ended_at.is_some_and(|t| t + keep < now))
            .map(|r| r.id.clone())
            .collect();
        for id in forgotten {
            self.requests.remove(&id);
            self.order.retain(|o| o != &id);
            self.dirty.insert(Dirty::Request(id));
        }
        self.run_matching(now);
    }

    fn suits(v: &Volunteer, r: &ClusterRequest) -> bool {
        let need = &r.requirements;
        let caps = &v.registration.capabilities;
        caps.cores >= need.min_cores
            && caps.memory_mb >= need.min_memory_mb
            && need.executor.is_none_or(|e| caps.executors.contains(&e))
            && v.registration.trusted_by == need.trusted_by
    }

    /// Reserves idle volunteers for gathering requests in posting order, and
    /// closes requests that are full or whose wait is over.
    fn run_matching(&mut self, now: u64) {
        let order = self.order.clone();
        for id in order {
            let Some(r) = self.requests.get(&id) else {
                continue;
            };
            if r.phase != Phase::Gathering {
                continue;
            }
            let wanted = r.request.workers as usize;
            let mut have = r.workers.clone();
            if have.len() < wanted {
                let mut idle: Vec<(&PublicKey, &Volunteer)> = self
                    .volunteers
                    .iter()
                    .filter(|(_, v)| v.state == VolunteerState::Idle && Self::suits(v, &r.request))
                    .collect();
                idle.sort_by_key(|(k, v)| (v.since, **k));
                let picked: Vec<PublicKey> = idle
                    .into_iter()
                    .take(wanted - have.len())
                    .map(|(k, _)| *k)
                    .collect();
                for k in &picked {
                    if let Some(v) = self.volunteers.get_mut(k) {
                        v.state = VolunteerState::Reserved(id.clone());
                    }
                    self.dirty.insert(Dirty::Volunteer(*k));
                }
                have.extend(picked);
            }
            let wait_over = now >= r.posted_at + r.request.wait_secs;
            let min = r.request.min_workers as usize;
            let next = if have.len() >= wanted || (wait_over && have.len() >= min) {
                Phase::Matched
            } else if wait_over && r.request.wait_secs > 0 {
                Phase::Expired
            } else {
                Phase::Gathering
            };
            if let Some(r) = self.requests.get_mut(&id) {
                if r.workers != have {
                    r.workers = have.clone();
                    self.dirty.insert(Dirty::Request(id.clone()));
                }
                match next {
                    Phase::Matched => self.issue_tickets(&id, now),
                    Phase::Expired => {
                        r.phase = Phase::Expired;
                        r.ended_at = Some(now);
                        self.dirty.insert(Dirty::Request(id.clone()));
                        self.release(&have);
                    }
                    _ => {}
                }
            }
        }
    }

    fn issue_tickets(&mut self, id: &RequestId, now: u64) {
        let Some(r) = self.requests.get_mut(id) else {
            return;
        };
        r.phase = Phase::Matched;
        r.ended_at = Some(now);
        let (job_key, address, workers) =
            (r.job_key, r.request.job_address.clone(), r.workers.clone());
        self.dirty.insert(Dirty::Request(id.clone()));
        let matched: Vec<MatchedWorker> = workers
            .iter()
            .map(|w| MatchedWorker {
                pseudonym: *w,
                discovery_key: self
                    .volunteers
                    .get(w)
                    .and_then(|v| v.registration.discovery_key.clone()),
            })
            .collect();
        if let Some(r) = self.requests.get_mut(id) {
            r.matched = matched;
        }
        for w in workers {
            let ticket = JoinTicket {
                ticket: TicketId::random(),
                request: id.clone(),
                job_key,
                job_address: address.clone(),
                worker: w,
                issued_at: now,
                expires_at: now + self.config.ticket_ttl,
            };
            let signed = Signed::sign(&self.identity, &ticket);
            if let Some(v) = self.volunteers.get_mut(&w) {
                v.state = VolunteerState::Ticketed(signed);
                self.dirty.insert(Dirty::Volunteer(w));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tormr_core::wire::bulletin::{Capabilities, ExecutorKind, Requirements};

    fn registration(now: u64, cores: u32) -> Registration {
        Registration {
            capabilities: Capabilities {
                cores,
                memory_mb: 1024,
                executors: vec![ExecutorKind::Process],
            },
            trusted_by: None,
            discovery_key: None,
            issued_at: now,
        }
    }

    fn request(workers: u32, min: u32, wait: u64, now: u64) -> ClusterRequest {
        ClusterRequest {
            job_address: "127.0.0.1:9".into(),
            workers,
            min_workers: min,
            wait_secs: wait,
            requirements: Requirements::default(),
            issued_at: now,
        }
    }

    fn board() -> Board {
        Board::new(Identity::generate(), BoardConfig::default())
    }

    #[test]
    fn request_gathers_then_tickets_are_handed_out_once() {
        let mut b = board();
        let job = Identity::generate();
        let id = b
            .post(job.public(), request(2, 2, 60, 100), "d1".into(), 100)
            .unwrap();
        assert_eq!(
            b.state(&id),
            Some(RequestState::Gathering { have: 0, wanted: 2 })
        );
        let (w1, w2) = (Identity::generate().public(), Identity::generate().public());
        b.register(w1, registration(100, 1), 100).unwrap();
        assert_eq!(
            b.state(&id),
            Some(RequestState::Gathering { have: 1, wanted: 2 })
        );
        b.register(w2, registration(101, 1), 101).unwrap();
        assert!(
            matches!(b.state(&id), Some(RequestState::Matched { workers }) if workers.len() == 2)
        );
        let TicketAnswer::Ticket { ticket } = b.poll(&w1, 102, 102).unwrap() else {
            panic!("no ticket")
        };
        let t = ticket.open_by(&b.key()).unwrap();
        assert_eq!(
            (t.worker, t.job_key, t.request.clone()),
            (w1, job.public(), id.clone())
        );
        // Handed out once: the volunteer must register again for more work.
        assert!(matches!(
            b.poll(&w1, 103, 103).unwrap(),
            TicketAnswer::Unregistered
        ));
    }

    #[test]
    fn wait_over_accepts_minimum_or_expires() {
        let mut b = board();
        let job = Identity::generate();
        let ok = b
            .post(job.public(), request(3, 1, 10, 100), "a".into(), 100)
            .unwrap();
        let w = Identity::generate().public();
        b.register(w, registration(100, 1), 100).unwrap();
        b.tick(105);
        assert!(matches!(
            b.state(&ok),
            Some(RequestState::Gathering { have: 1, .. })
        ));
        b.tick(111);
        assert!(
            matches!(b.state(&ok), Some(RequestState::Matched { workers }) if workers.iter().map(|m| m.pseudonym).collect::<Vec<_>>() == vec![w])
        );

        let short = b
            .post(job.public(), request(3, 2, 10, 200), "b".into(), 200)
            .unwrap();
        let w2 = Identity::generate().public();
        b.register(w2, registration(200, 1), 200).unwrap();
        b.tick(211);
        assert_eq!(b.state(&short), Some(RequestState::Expired { have: 1 }));
        assert_eq!(
            b.volunteer(&w2).unwrap().state,
            VolunteerState::Idle,
            "released for other requests"
        );
    }

    #[test]
    fn stale_registrations_lapse_and_leave_their_request() {
        let mut b = board();
        let id = b
            .post(
                Identity::generate().public(),
                request(2, 2, 0, 100),
                "a".into(),
                100,
            )
            .unwrap();
        let w = Identity::generate().public();
        b.register(w, registration(100, 1), 100).unwrap();
        assert!(matches!(
            b.state(&id),
            Some(RequestState::Gathering { have: 1, .. })
        ));
        b.tick(100 + 91);
        assert!(b.volunteer(&w).is_none());
        assert!(matches!(
            b.state(&id),
            Some(RequestState::Gathering { have: 0, .. })
        ));
    }

    #[test]
    fn requirements_and_freshness_are_enforced() {
        let mut b = board();
        let mut req = request(1, 1, 0, 100);
        req.requirements.min_cores = 4;
        let id = b
            .post(Identity::generate().public(), req, "a".into(), 100)
            .unwrap();
        b.register(Identity::generate().public(), registration(100, 2), 100)
            .unwrap();
        assert!(matches!(
            b.state(&id),
            Some(RequestState::Gathering { have: 0, .. })
        ));
        b.register(Identity::generate().public(), registration(100, 8), 100)
            .unwrap();
        assert!(matches!(b.state(&id), Some(RequestState::Matched { .. })));
        assert!(matches!(
            b.register(Identity::generate().public(), registration(0, 1), 1000),
            Err(BoardError::Stale { .. })
        ));
        assert!(
            b.post(
                Identity::generate().public(),
                request(0, 0, 0, 100),
                "z".into(),
                100
            )
            .is_err()
        );
    }

    #[test]
    fn reposting_the_same_signed_request_is_idempotent_and_only_the_owner_withdraws() {
        let mut b = board();
        let job = Identity::generate();
        let a = b
            .post(job.public(), request(5, 5, 0, 100), "same".into(), 100)
            .unwrap();
        let again = b
            .post(job.public(), request(5, 5, 0, 100), "same".into(), 100)
            .unwrap();
        assert_eq!(a, again);
        assert!(matches!(
            b.withdraw(&Identity::generate().public(), &a, 100, 100),
            Err(BoardError::NotOwner(_))
        ));
        b.withdraw(&job.public(), &a, 100, 100).unwrap();
        assert_eq!(b.state(&a), Some(RequestState::Withdrawn));
    }
}
