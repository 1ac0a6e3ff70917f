//! The board's state and its matching rules, with time passed in so tests can
//! drive it deterministically.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tormr_core::identity::{Identity, PublicKey, Signed};
use tormr_core::ids::{RequestId, TicketId};
use tormr_core::wire::bulletin::{
    Ban, ClusterRequest, JoinTicket, MAX_DISCOVERY_KEY, MatchedWorker, Registration, RequestState,
    Requirements, TicketAnswer,
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
    /// Pseudonyms one owner may ban (each ban is a few hundred bytes kept
    /// for good).
    pub max_bans_per_owner: usize,
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
            max_bans_per_owner: 10_000,
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
    /// The owner who vouched for the job key, whose bans apply.
    #[serde(default)]
    pub owner: Option<PublicKey>,
}

/// A pseudonym an owner banned, as the board keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BanRecord {
    pub owner: PublicKey,
    pub worker: PublicKey,
    pub issued_at: u64,
    pub reason: String,
}

/// A changed entry, for the service to persist.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dirty {
    Volunteer(PublicKey),
    Request(RequestId),
    /// (owner, worker)
    Ban(PublicKey, PublicKey),
}

/// The whole board.
pub struct Board {
    config: BoardConfig,
    identity: Identity,
    volunteers: HashMap<PublicKey, Volunteer>,
    requests: BTreeMap<RequestId, Request>,
    /// Posting order, which is matching order.
    order: Vec<RequestId>,
    /// Owner → banned worker → record.
    bans: HashMap<PublicKey, BTreeMap<PublicKey, BanRecord>>,
    dirty: BTreeSet<Dirty>,
}

/// Every persisted entry of a board.
#[derive(Debug, Default)]
pub struct Entries {
    pub volunteers: Vec<(PublicKey, Volunteer)>,
    pub requests: Vec<Request>,
    pub bans: Vec<BanRecord>,
}

impl Board {
    pub fn new(identity: Identity, config: BoardConfig) -> Self {
        Board {
            config,
            identity,
            volunteers: HashMap::new(),
            requests: BTreeMap::new(),
            order: Vec::new(),
            bans: HashMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Rebuilds a board from persisted entries.
    pub fn restore(identity: Identity, config: BoardConfig, entries: Entries) -> Self {
        let mut board = Board::new(identity, config);
        board.replace_entries(entries);
        board
    }

    /// Replaces every entry with persisted ones (another replica changed
    /// the shared store), forgetting unpersisted changes.
    pub fn replace_entries(&mut self, entries: Entries) {
        let Entries {
            volunteers,
            mut requests,
            bans,
        } = entries;
        requests.sort_by(|a, b| (a.posted_at, &a.id).cmp(&(b.posted_at, &b.id)));
        self.order = requests.iter().map(|r| r.id.clone()).collect();
        self.requests = requests.into_iter().map(|r| (r.id.clone(), r)).collect();
        self.volunteers = volunteers.into_iter().collect();
        self.bans.clear();
        for b in bans {
            self.bans.entry(b.owner).or_default().insert(b.worker, b);
        }
        self.dirty.clear();
    }

    pub fn ban_record(&self, owner: &PublicKey, worker: &PublicKey) -> Option<&BanRecord> {
        self.bans.get(owner)?.get(worker)
    }

    fn banned_by(&self, owner: Option<&PublicKey>, worker: &PublicKey) -> bool {
        owner.is_some_and(|o| self.ban_record(o, worker).is_some())
    }

    /// Records `owner`'s ban of a pseudonym (signed by her: the caller
    /// checked). Banning twice keeps the first.
    pub fn ban(&mut self, owner: PublicKey, ban: Ban, now: u64) -> Result<(), BoardError> {
        self.fresh(ban.issued_at, now)?;
        if ban.reason.len() > Ban::MAX_REASON {
            return Err(BoardError::Invalid(format!(
                "a ban's reason is at most {} bytes",
                Ban::MAX_REASON
            )));
        }
        let max = self.config.max_bans_per_owner;
        let hers = self.bans.entry(owner).or_default();
        if hers.contains_key(&ban.worker) {
            return Ok(());
        }
        if hers.len() >= max {
            return Err(BoardError::Full {
                what: "bans of this owner",
            });
        }
        hers.insert(
            ban.worker,
            BanRecord {
                owner,
                worker: ban.worker,
                issued_at: ban.issued_at,
                reason: ban.reason,
            },
        );
        self.dirty.insert(Dirty::Ban(owner, ban.worker));
        Ok(())
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
        if request.requirements.arbiters.len() > Requirements::MAX_ARBITERS {
            return Err(BoardError::Invalid(format!(
                "at most {} arbiters",
                Requirements::MAX_ARBITERS
            )));
        }
        let owner = match &request.owner {
            None => None,
            Some(endorsement) => match endorsement.open() {
                Ok(e) if e.job_key == job_key => Some(endorsement.signer),
                _ => {
                    return Err(BoardError::Invalid(
                        "the owner's endorsement does not vouch for the key that signed the request"
                            .into(),
                    ));
                }
            },
        };
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
                owner,
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
        Self::can_run(v, r) && v.registration.trusted_by == r.requirements.trusted_by
    }

    /// Whether the volunteer offers what the job needs to run at all (a named
    /// arbiter too: one without Docker would only leave an image job).
    fn can_run(v: &Volunteer, r: &ClusterRequest) -> bool {
        let need = &r.requirements;
        let caps = &v.registration.capabilities;
        caps.cores >= need.min_cores
            && caps.memory_mb >= need.min_memory_mb
            && need.executor.is_none_or(|e| caps.executors.contains(&e))
    }

    /// Reserves idle volunteers for gathering requests in posting order, and
    /// closes requests that are full or whose wait is over.
    fn run_matching(&mut self, now: u64) {
        let order = self.order.clone();
        // Idle volunteers, oldest first, gathered once for every request
        // (not once per request: a board holds many thousands).
        let mut idle: Vec<(u64, PublicKey)> = self
            .volunteers
            .iter()
            .filter(|(_, v)| v.state == VolunteerState::Idle)
            .map(|(k, v)| (v.since, *k))
            .collect();
        idle.sort_unstable();
        for id in order {
            let Some(r) = self.requests.get(&id) else {
                continue;
            };
            if r.phase != Phase::Gathering {
                continue;
            }
            let arbiters = &r.request.requirements.arbiters;
            let mut have = r.workers.clone();
            // The owner's named arbiters come on top of the workers wanted.
            let wanted =
                r.request.workers as usize + have.iter().filter(|w| arbiters.contains(w)).count();
            let mut named: Vec<PublicKey> = Vec::new();
            for a in arbiters {
                let idle_here = idle.iter().any(|(_, k)| k == a);
                let hers = self.volunteers.get(a).is_some_and(|v| {
                    r.owner.is_some()
                        && v.registration.trusted_by == r.owner
                        && Self::can_run(v, &r.request)
                });
                if idle_here && hers && !have.contains(a) {
                    named.push(*a);
                }
            }
            idle.retain(|(_, k)| !named.contains(k));
            if have.len() < wanted && !idle.is_empty() {
                let mut picked: Vec<PublicKey> = Vec::new();
                idle.retain(|(_, k)| {
                    let take = picked.len() < wanted - have.len()
                        && !self.banned_by(r.owner.as_ref(), k)
                        && self
                            .volunteers
                            .get(k)
                            .is_some_and(|v| Self::suits(v, &r.request));
                    if take {
                        picked.push(*k);
                    }
                    !take
                });
                for k in &picked {
                    if let Some(v) = self.volunteers.get_mut(k) {
                        v.state = VolunteerState::Reserved(id.clone());
                    }
                    self.dirty.insert(Dirty::Volunteer(*k));
                }
                have.extend(picked);
            }
            for k in &named {
                if let Some(v) = self.volunteers.get_mut(k) {
                    v.state = VolunteerState::Reserved(id.clone());
                }
                self.dirty.insert(Dirty::Volunteer(*k));
            }
            let wanted = wanted + named.len();
            have.extend(named);
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
            owner: None,
        }
    }

    fn board() -> Board {
        Board::new(Identity::generate(), BoardConfig::default())
    }

    fn endorsed(owner: &Identity, job: &Identity, mut r: ClusterRequest) -> ClusterRequest {
        r.owner = Some(Signed::sign(
            owner,
            &tormr_core::wire::job::OwnerEndorsement {
                job_key: job.public(),
                issued_at: r.issued_at,
            },
        ));
        r
    }

    fn matched(b: &Board, id: &RequestId) -> Vec<PublicKey> {
        match b.state(id) {
            Some(RequestState::Matched { workers }) => {
                workers.iter().map(|m| m.pseudonym).collect()
            }
            other => panic!("not matched: {other:?}"),
        }
    }

    #[test]
    fn a_banned_pseudonym_is_kept_out_of_that_owners_requests_only() {
        let mut b = board();
        let (owner, other) = (Identity::generate(), Identity::generate());
        let (liar, honest) = (Identity::generate().public(), Identity::generate().public());
        let ban = Ban {
            worker: liar,
            issued_at: 100,
            reason: "lied".into(),
        };
        b.ban(owner.public(), ban.clone(), 100).unwrap();
        b.ban(owner.public(), ban, 100).unwrap();
        assert_eq!(b.take_dirty().len(), 1, "banning twice keeps one record");
        // The liar registered first: oldest volunteers are matched first.
        b.register(liar, registration(100, 1), 100).unwrap();
        b.register(honest, registration(101, 1), 101).unwrap();

        let job = Identity::generate();
        let hers = b
            .post(
                job.public(),
                endorsed(&owner, &job, request(1, 1, 60, 102)),
                "h".into(),
                102,
            )
            .unwrap();
        assert_eq!(matched(&b, &hers), vec![honest]);

        let job2 = Identity::generate();
        let theirs = b
            .post(
                job2.public(),
                endorsed(&other, &job2, request(1, 1, 60, 103)),
                "t".into(),
                103,
            )
            .unwrap();
        assert_eq!(
            matched(&b, &theirs),
            vec![liar],
            "another owner's ban list is her own"
        );
    }

    #[test]
    fn named_arbiters_of_the_owner_come_on_top_of_the_workers_wanted() {
        let mut b = board();
        let (owner, stranger) = (Identity::generate(), Identity::generate());
        let mine = Identity::generate().public();
        let mut own = registration(100, 1);
        own.trusted_by = Some(owner.public());
        b.register(mine, own, 100).unwrap();
        let volunteers: Vec<PublicKey> = (0..3).map(|_| Identity::generate().public()).collect();
        for (i, v) in volunteers.iter().enumerate() {
            b.register(*v, registration(101 + i as u64, 1), 101 + i as u64)
                .unwrap();
        }
        // A stranger naming the owner's worker does not get it.
        let job = Identity::generate();
        let mut theirs = endorsed(&stranger, &job, request(1, 1, 60, 110));
        theirs.requirements.arbiters = vec![mine];
        let t = b.post(job.public(), theirs, "t".into(), 110).unwrap();
        assert_eq!(matched(&b, &t), vec![volunteers[0]]);
        // Her request gets two volunteers and her arbiter.
        let job2 = Identity::generate();
        let mut hers = endorsed(&owner, &job2, request(2, 2, 60, 111));
        hers.requirements.arbiters = vec![mine];
        let h = b.post(job2.public(), hers, "h".into(), 111).unwrap();
        let mut got = matched(&b, &h);
        got.sort();
        let mut want = vec![volunteers[1], volunteers[2], mine];
        want.sort();
        assert_eq!(got, want);
        // Too many arbiters is refused.
        let job3 = Identity::generate();
        let mut greedy = endorsed(&owner, &job3, request(1, 1, 60, 112));
        greedy.requirements.arbiters = vec![mine; Requirements::MAX_ARBITERS + 1];
        assert!(matches!(
            b.post(job3.public(), greedy, "g".into(), 112),
            Err(BoardError::Invalid(_))
        ));
    }

    #[test]
    fn a_named_arbiter_that_cannot_run_the_job_is_not_matched() {
        let owner = Identity::generate();
        let arbiter = Identity::generate().public();
        let docker_volunteer = Identity::generate().public();
        for executor in [ExecutorKind::Docker, ExecutorKind::Process] {
            let mut b = board();
            let mut own = registration(100, 1);
            own.trusted_by = Some(owner.public());
            b.register(arbiter, own, 100).unwrap();
            let mut volunteer = registration(101, 1);
            volunteer.capabilities.executors = vec![ExecutorKind::Docker, ExecutorKind::Process];
            b.register(docker_volunteer, volunteer, 101).unwrap();
            let job = Identity::generate();
            let mut r = endorsed(&owner, &job, request(1, 1, 60, 110));
            r.requirements.executor = Some(executor);
            r.requirements.arbiters = vec![arbiter];
            let id = b.post(job.public(), r, "r".into(), 110).unwrap();
            // The arbiter offers plain processes only: an image job goes without it.
            assert_eq!(
                matched(&b, &id).contains(&arbiter),
                executor == ExecutorKind::Process,
                "{executor:?}"
            );
        }
    }

    #[test]
    fn an_endorsement_of_another_key_or_an_oversized_ban_is_refused() {
        let mut b = board();
        let (owner, job, thief) = (
            Identity::generate(),
            Identity::generate(),
            Identity::generate(),
        );
        // A thief reusing the owner's endorsement of another job key.
        let err = b
            .post(
                thief.public(),
                endorsed(&owner, &job, request(1, 1, 60, 100)),
                "x".into(),
                100,
            )
            .unwrap_err();
        assert!(matches!(err, BoardError::Invalid(_)), "{err}");
        let long = Ban {
            worker: job.public(),
            issued_at: 100,
            reason: "x".repeat(Ban::MAX_REASON + 1),
        };
        assert!(matches!(
            b.ban(owner.public(), long, 100),
            Err(BoardError::Invalid(_))
        ));
        let stale = Ban {
            worker: job.public(),
            issued_at: 1,
            reason: String::new(),
        };
        assert!(matches!(
            b.ban(owner.public(), stale, 10_000),
            Err(BoardError::Stale { .. })
        ));
        let mut small = Board::new(
            Identity::generate(),
            BoardConfig {
                max_bans_per_owner: 2,
                ..BoardConfig::default()
            },
        );
        for i in 0..3 {
            let ban = Ban {
                worker: Identity::generate().public(),
                issued_at: 100,
                reason: String::new(),
            };
            let r = small.ban(owner.public(), ban, 100);
            assert_eq!(r.is_ok(), i < 2, "{r:?}");
        }
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
