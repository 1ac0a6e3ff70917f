//! The task scheduler: which worker runs what, and when the job is done.
//!
//! Tasks go pending → leased (an attempt with a deadline, extended by the
//! worker's heartbeats) → done. A lease that runs out, or a worker that falls
//! silent, puts the task back; a failed attempt is retried on another worker up
//! to the job's attempt limit, then fails the job. Near the end of a phase an
//! idle worker gets a backup copy of a straggler, and the first result wins.
//!
//! Everything here is plain data driven by explicit `now` values, so tests
//! replay any interleaving exactly; the service wraps it with I/O and a clock.

use crate::records::{BucketRef, TaskResult};
use crate::verify::{Check, Claim, Draws, Settled, arbiter_must_be_trusted, same_answer};
use std::collections::{BTreeMap, BTreeSet};
use tormr_core::counters::{Counters, TORMR};
use tormr_core::ids::{AttemptId, BucketId, TaskId, TaskKind};
use tormr_core::seal::BucketKey;
use tormr_core::spec::{JobLimits, JobSpec};
use tormr_core::wire::job::{JobState, PhaseStatus, WrittenBucket};

/// A worker's number within one job.
pub type WorkerId = u32;

/// A volunteer's ringer comes among its first this many tasks (where
/// exactly is drawn), so it cannot answer its first task honestly and lie
/// after.
const RINGER_WINDOW: f64 = 3.0;

/// Timing policy of a scheduler, in milliseconds.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long a lease lasts without a heartbeat.
    pub lease_ms: u64,
    /// A worker not heard from for this long is dropped.
    pub worker_timeout_ms: u64,
    /// Back up stragglers running longer than this multiple of the phase's
    /// median task time (and at least `speculate_after_ms`).
    pub speculate_factor: u64,
    pub speculate_after_ms: u64,
    /// Seed of the replication draws; random when `None`.
    pub seed: Option<u64>,
    /// Added to attempt numbers: a resumed job master numbers its attempts
    /// apart from the crashed one's, so an output bucket (named after its
    /// attempt) that a worker of the old run may still be writing is never
    /// one the new run hands out.
    pub attempt_base: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            lease_ms: 60_000,
            worker_timeout_ms: 90_000,
            speculate_factor: 2,
            speculate_after_ms: 10_000,
            seed: None,
            attempt_base: 0,
        }
    }
}

/// Where a task's output goes: one sealed bucket per partition, keyed fresh.
#[derive(Debug, Clone)]
pub struct OutputSlot {
    pub partition: u32,
    pub bucket: BucketId,
    pub key: BucketKey,
}

/// A lease handed to a worker.
#[derive(Debug, Clone)]
pub struct Leased {
    pub attempt: AttemptId,
    pub inputs: Vec<BucketRef>,
    pub outputs: Vec<OutputSlot>,
    pub speculative: bool,
}

/// What a worker asking for work gets.
#[derive(Debug, Clone)]
pub enum Assignment {
    Task(Box<Leased>),
    /// Nothing for this worker now.
    Wait,
    /// Only input buckets are left and the worker holds its cap of them.
    CapReached {
        held: u32,
        cap: u32,
    },
    /// The job is over.
    Done,
}

/// Why a report was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error(
        "attempt {0} is not leased to this worker any more (lease expired, worker dropped, or another copy won)"
    )]
    LeaseLost(String),
    #[error("attempt {0} reported outputs that do not match its assignment: {1}")]
    BadOutputs(String, String),
}

/// How far the owner trusts a worker as it joins.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Standing {
    /// Earned trust, 0 to 1 (consecutive agreements in earlier tasks).
    pub trust: f64,
    /// The owner's own worker: never replicated, and may arbitrate.
    pub trusted: bool,
}

/// What verification learnt about a worker, for the owner's trust book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustEvent {
    /// Its answer matched another worker's.
    Agreed(WorkerId),
    /// Its answer lost a dispute: banned from the job.
    Banned(WorkerId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptStatus {
    Running,
    Succeeded,
    Failed,
    /// The lease ran out or the worker was dropped.
    Lost,
    /// Another copy won.
    Cancelled,
}

#[derive(Debug, Clone)]
struct Attempt {
    id: AttemptId,
    worker: WorkerId,
    started: u64,
    lease_until: u64,
    status: AttemptStatus,
    outputs: Vec<OutputSlot>,
    /// A volunteer running a ringer whose answer the owner already has.
    probe: bool,
}

#[derive(Debug, Clone)]
struct Task {
    id: TaskId,
    inputs: Vec<BucketRef>,
    attempts: Vec<Attempt>,
    failures: u32,
    failed_on: BTreeSet<WorkerId>,
    result: Option<TaskResult>,
    /// Who produced `result`, and whether another copy or a trusted worker
    /// confirmed it.
    result_by: Option<WorkerId>,
    verified: bool,
    /// Answers being compared before the task counts as done.
    check: Option<Check>,
    last_error: Option<(String, String)>,
    /// A ringer: answered first by the owner's own worker, then handed to
    /// volunteers to test them.
    ringer: bool,
    /// The owner's own worker answered this ringer: volunteers are tested
    /// against `result`.
    known: bool,
}

impl Task {
    fn new(id: TaskId, inputs: Vec<BucketRef>) -> Self {
        Task {
            id,
            inputs,
            attempts: Vec::new(),
            failures: 0,
            failed_on: BTreeSet::new(),
            result: None,
            result_by: None,
            verified: false,
            check: None,
            last_error: None,
            ringer: false,
            known: false,
        }
    }

    fn running(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.status == AttemptStatus::Running)
    }

    fn is_pending(&self) -> bool {
        self.result.is_none() && self.running().next().is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Map,
    Reduce,
}

/// Every task of `phase` of step `step` before `index` has an answer, so a
/// scan for open work can start there. Answers are forgotten only by
/// `Scheduler::invalidate`, which resets it; otherwise it only moves forward,
/// and a long job's scans stay short instead of passing every finished task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScanFrom {
    step: usize,
    phase: Phase,
    index: usize,
}

impl Default for ScanFrom {
    fn default() -> Self {
        ScanFrom {
            step: 0,
            phase: Phase::Map,
            index: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Step {
    reduces: u32,
    maps: Vec<Task>,
    reduce_tasks: Vec<Task>,
    inputs_closed: bool,
    reduces_created: bool,
}

impl Step {
    fn map_only(&self) -> bool {
        self.reduces == 0
    }

    // Tasks are handed out in order, so the last ones finish last: looking
    // from the back finds an unfinished one at once while a phase runs.
    fn maps_done(&self) -> bool {
        self.inputs_closed && self.maps.iter().rev().all(|t| t.result.is_some())
    }

    fn done(&self) -> bool {
        self.maps_done()
            && (self.map_only()
                || (self.reduces_created
                    && self.reduce_tasks.iter().rev().all(|t| t.result.is_some())))
    }

    fn phase(&self) -> Phase {
        if self.maps_done() && !self.map_only() {
            Phase::Reduce
        } else {
            Phase::Map
        }
    }

    fn tasks(&self, phase: Phase) -> &Vec<Task> {
        match phase {
            Phase::Map => &self.maps,
            Phase::Reduce => &self.reduce_tasks,
        }
    }

    fn tasks_mut(&mut self, phase: Phase) -> &mut Vec<Task> {
        match phase {
            Phase::Map => &mut self.maps,
            Phase::Reduce => &mut self.reduce_tasks,
        }
    }

    /// The step's outputs in order: reduce outputs, or map outputs if map-only.
    fn outputs(&self) -> Vec<BucketRef> {
        let tasks = if self.map_only() {
            &self.maps
        } else {
            &self.reduce_tasks
        };
        tasks
            .iter()
            .filter_map(|t| t.result.as_ref())
            .flat_map(|r| r.outputs.iter().cloned())
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
struct WorkerState {
    alive: bool,
    last_seen: u64,
    input_buckets: BTreeSet<u32>,
    running: BTreeSet<AttemptId>,
    done: u32,
    failed: u32,
    cancels: Vec<AttemptId>,
    standing: Standing,
    banned: bool,
    /// Ordinary tasks left before this volunteer gets its ringer; `None`
    /// when no ringer is due (the owner's workers, or already tested).
    ringer_after: Option<u32>,
}

/// A worker as the owner's status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSummary {
    pub id: WorkerId,
    pub alive: bool,
    pub running: u32,
    pub done: u32,
    pub failed: u32,
    pub input_buckets: u32,
    pub banned: bool,
}

/// Attempt tallies for the job's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptTally {
    pub launched: u32,
    pub failed: u32,
    pub lost: u32,
    pub speculative: u32,
    /// Copies run to check another worker's answer (arbiters included).
    pub verification_copies: u32,
    /// Disputes that needed an arbiter.
    pub disputes: u32,
    /// Tasks recomputed because the worker that answered them was banned.
    pub recomputed: u32,
    pub banned: u32,
    /// Ringers handed to volunteers (also counted as verification copies).
    pub ringer_probes: u32,
    /// Volunteers whose ringer answer differed from the owner's (banned).
    pub ringers_failed: u32,
}

pub struct Scheduler {
    config: SchedulerConfig,
    limits: JobLimits,
    steps: Vec<Step>,
    current: usize,
    /// Where scans of the current phase for open work start.
    scan_from: ScanFrom,
    workers: BTreeMap<WorkerId, WorkerState>,
    state: JobState,
    counters: Counters,
    tally: AttemptTally,
    draws: Draws,
    events: Vec<TrustEvent>,
    /// Tasks whose stored results are void (a banned worker's answers and
    /// whatever was computed from them).
    forgotten: Vec<TaskId>,
    /// Tasks whose answer was settled since the last call, to be stored.
    settled: Vec<TaskId>,
    /// Settled tasks not yet in the store. Progress does not count them as
    /// done: an owner who sees a task done and kills the job master must
    /// find it done on resume.
    unstored: BTreeSet<TaskId>,
}

impl Scheduler {
    pub fn new(spec: &JobSpec, config: SchedulerConfig) -> Self {
        let steps = spec
            .steps
            .iter()
            .map(|s| Step {
                reduces: s.reduces,
                maps: Vec::new(),
                reduce_tasks: Vec::new(),
                inputs_closed: false,
                reduces_created: false,
            })
            .collect();
        Scheduler {
            limits: spec.limits.clone(),
            steps,
            current: 0,
            scan_from: ScanFrom::default(),
            workers: BTreeMap::new(),
            state: JobState::Running,
            counters: Counters::default(),
            tally: AttemptTally::default(),
            draws: Draws::new(
                config
                    .seed
                    .unwrap_or_else(|| u64::from_le_bytes(tormr_core::random::bytes::<8>())),
            ),
            events: Vec::new(),
            forgotten: Vec::new(),
            settled: Vec::new(),
            unstored: BTreeSet::new(),
            config,
        }
    }

    pub fn state(&self) -> &JobState {
        &self.state
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn tally(&self) -> &AttemptTally {
        &self.tally
    }

    /// The last step's outputs, in partition order.
    pub fn outputs(&self) -> Vec<BucketRef> {
        self.steps.last().map(Step::outputs).unwrap_or_default()
    }

    /// Adds a step-0 input bucket as a new map task; returns the task's index.
    pub fn add_input(&mut self, input: BucketRef) -> Option<u32> {
        let step = self.steps.first_mut()?;
        if step.inputs_closed {
            return None;
        }
        let index = step.maps.len() as u32;
        let mut task = Task::new(
            TaskId {
                step: 0,
                kind: TaskKind::Map,
                index,
            },
            vec![input],
        );
        // Ringers are wanted early (volunteers are tested as they start),
        // so each new input is one by a coin toss until there are enough.
        // Counting stops at the wanted number, which the first ~2N reach.
        let want = self.limits.verify.ringers as usize;
        let chosen = step.maps.iter().filter(|t| t.ringer).take(want).count();
        task.ringer = chosen < want && self.draws.uniform() < 0.5;
        step.maps.push(task);
        Some(index)
    }

    /// No more input will come.
    pub fn close_input(&mut self) {
        if let Some(step) = self.steps.first_mut() {
            step.inputs_closed = true;
        }
        self.advance();
    }

    /// Records a finished task found in the store (a resumed job).
    pub fn restore(&mut self, task: TaskId, result: TaskResult) {
        let Some(step) = self.steps.get_mut(task.step as usize) else {
            return;
        };
        if let Some(t) = step
            .tasks_mut(match task.kind {
                TaskKind::Map => Phase::Map,
                TaskKind::Reduce => Phase::Reduce,
            })
            .get_mut(task.index as usize)
        {
            self.counters.merge(&result.counters);
            t.result = Some(result);
        }
        self.advance();
    }

    /// A worker joins as a newcomer with no earned trust.
    pub fn join(&mut self, worker: WorkerId, now: u64) {
        self.join_as(worker, now, Standing::default());
    }

    pub fn join_as(&mut self, worker: WorkerId, now: u64, standing: Standing) {
        let first_time = !self.workers.contains_key(&worker);
        let ringer_after = (first_time && !standing.trusted && self.limits.verify.ringers > 0)
            .then(|| (self.draws.uniform() * RINGER_WINDOW) as u32);
        let w = self.workers.entry(worker).or_default();
        if first_time {
            w.ringer_after = ringer_after;
        }
        w.alive = true;
        w.last_seen = now;
        w.standing = standing;
    }

    pub fn is_alive(&self, worker: WorkerId) -> bool {
        self.workers.get(&worker).is_some_and(|w| w.alive)
    }

    pub fn is_banned(&self, worker: WorkerId) -> bool {
        self.workers.get(&worker).is_some_and(|w| w.banned)
    }

    /// What verification learnt since the last call.
    pub fn take_events(&mut self) -> Vec<TrustEvent> {
        std::mem::take(&mut self.events)
    }

    /// Tasks whose stored results became void since the last call.
    pub fn take_forgotten(&mut self) -> Vec<TaskId> {
        std::mem::take(&mut self.forgotten)
    }

    /// Tasks whose answers were settled since the last call, with the answers
    /// (by a report, by agreement, or by `tick` when no check was possible).
    /// They count as done once `stored` says so.
    pub fn take_settled(&mut self) -> Vec<(TaskId, TaskResult)> {
        let ids = std::mem::take(&mut self.settled);
        ids.into_iter()
            .filter_map(|id| Some((id, self.task_mut(id)?.result.clone()?)))
            .collect()
    }

    /// A settled task's answer is in the store.
    pub fn stored(&mut self, id: TaskId) {
        self.unstored.remove(&id);
    }

    /// Settled tasks whose storing failed, to be tried again.
    pub fn store_again(&mut self, ids: impl IntoIterator<Item = TaskId>) {
        self.settled.extend(ids);
    }

    fn trusted(&self, worker: WorkerId) -> bool {
        self.workers
            .get(&worker)
            .is_some_and(|w| w.standing.trusted)
    }

    fn trusted_alive(&self) -> bool {
        self.workers.values().any(|w| w.alive && w.standing.trusted)
    }

    /// Whether `worker` may take `task` now: nobody runs it, and if it is
    /// being checked, `worker` has not answered it yet and is trusted when
    /// the dispute needs a trusted arbiter.
    fn open_for(&self, task: &Task, worker: WorkerId) -> bool {
        if !task.is_pending() {
            return false;
        }
        if task.ringer && !self.trusted(worker) && self.trusted_alive() {
            return false;
        }
        match &task.check {
            None => true,
            Some(check) => {
                !check.has_claim_from(worker)
                    && (check.claims.len() < 2
                        || !arbiter_must_be_trusted(&self.limits.verify, self.trusted_alive())
                        || self.trusted(worker))
            }
        }
    }

    fn others_alive_without_failing(&self, task: &Task, worker: WorkerId) -> bool {
        self.workers
            .iter()
            .any(|(id, w)| *id != worker && w.alive && !task.failed_on.contains(id))
    }

    /// Gives `worker` something to do.
    pub fn assign(&mut self, worker: WorkerId, now: u64) -> Assignment {
        self.settle_unverifiable();
        // The service refuses a banned worker first; this is the backstop.
        if self.state != JobState::Running || self.is_banned(worker) {
            return Assignment::Done;
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_seen = now;
        }
        let Some(step) = self.steps.get(self.current) else {
            return Assignment::Done;
        };
        let phase = step.phase();
        let cap = self.limits.max_buckets_per_worker;
        let held = self
            .workers
            .get(&worker)
            .map(|w| w.input_buckets.len() as u32)
            .unwrap_or(0);
        if let Some(leased) = self.ringer_for(worker, now) {
            return Assignment::Task(Box::new(leased));
        }
        let from = self.scan_start(phase);
        let Some(step) = self.steps.get(self.current) else {
            return Assignment::Done;
        };
        let mut capped = false;
        let mut chosen = None;
        for (i, task) in self.in_ringer_order(step.tasks(phase), worker, from) {
            if !self.open_for(task, worker) {
                continue;
            }
            if task.failed_on.contains(&worker) && self.others_alive_without_failing(task, worker) {
                continue;
            }
            let reads_input = self.current == 0 && phase == Phase::Map;
            if reads_input
                && let Some(cap) = cap
                && held >= cap
                && !self
                    .workers
                    .get(&worker)
                    .is_some_and(|w| w.input_buckets.contains(&(i as u32)))
            {
                capped = true;
                continue;
            }
            chosen = Some(i);
            break;
        }
        if let Some(i) = chosen {
            return Assignment::Task(Box::new(self.lease_in(
                self.current,
                worker,
                phase,
                i,
                false,
                now,
            )));
        }
        if let Some(i) = self.straggler(worker, phase, now) {
            let reads_input = self.current == 0 && phase == Phase::Map;
            let over_cap = reads_input
                && cap.is_some_and(|c| {
                    held >= c
                        && !self
                            .workers
                            .get(&worker)
                            .is_some_and(|w| w.input_buckets.contains(&(i as u32)))
                });
            if !over_cap {
                return Assignment::Task(Box::new(self.lease_in(
                    self.current,
                    worker,
                    phase,
                    i,
                    true,
                    now,
                )));
            }
        }
        if capped {
            return Assignment::CapReached {
                held,
                cap: cap.unwrap_or(0),
            };
        }
        Assignment::Wait
    }

    /// The tasks in the order `worker` should consider them: the owner's
    /// workers answer ringers first; volunteers take one only when nothing
    /// else is left (and it then stops being a ringer).
    /// Tasks before `from` all have answers and are skipped, unless ringers
    /// are on (an answered ringer is still handed to volunteers).
    fn in_ringer_order<'t>(
        &self,
        tasks: &'t [Task],
        worker: WorkerId,
        from: usize,
    ) -> impl Iterator<Item = (usize, &'t Task)> + 't {
        let first = self.trusted(worker);
        let ringers = self.limits.verify.ringers > 0;
        let from = if ringers { 0 } else { from };
        let tasks = tasks.iter().enumerate().skip(from);
        tasks
            .clone()
            .filter(move |(_, t)| !ringers || t.ringer == first)
            .chain(tasks.filter(move |(_, t)| ringers && t.ringer != first))
    }

    /// A ringer for a volunteer whose test is due, if the owner's answer to
    /// one is known and the volunteer has not run it.
    fn ringer_for(&mut self, worker: WorkerId, now: u64) -> Option<Leased> {
        let w = self.workers.get(&worker)?;
        if w.ringer_after != Some(0) {
            return None;
        }
        let cap = self.limits.max_buckets_per_worker;
        let over_cap = |i: usize| {
            cap.is_some_and(|c| {
                w.input_buckets.len() as u32 >= c && !w.input_buckets.contains(&(i as u32))
            })
        };
        let known: Vec<usize> = self
            .steps
            .first()?
            .maps
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                t.known && !over_cap(*i) && t.attempts.iter().all(|a| a.worker != worker)
            })
            .map(|(i, _)| i)
            .collect();
        if known.is_empty() {
            return None;
        }
        let pick =
            known[((self.draws.uniform() * known.len() as f64) as usize).min(known.len() - 1)];
        let leased = self.lease_in(0, worker, Phase::Map, pick, false, now);
        if let Some((task, pos)) = self.find(&leased.attempt) {
            task.attempts[pos].probe = true;
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.ringer_after = None;
        }
        self.tally.ringer_probes += 1;
        self.tally.verification_copies += 1;
        Some(leased)
    }

    /// A volunteer's answer to a ringer, against the owner's: agreement
    /// earns trust, a difference is a lie.
    fn judge_ringer(&mut self, worker: WorkerId, id: TaskId, outputs: &[BucketRef]) {
        let Some(known) = self.task_mut(id).and_then(|t| t.result.as_ref()) else {
            return;
        };
        if same_answer(&known.outputs, outputs) {
            self.events.push(TrustEvent::Agreed(worker));
        } else {
            self.tally.ringers_failed += 1;
            tracing::warn!("worker #{worker} answered ringer {id} differently from the owner");
            self.ban(worker);
        }
    }

    /// The first task of the current step's `phase` that may lack an
    /// answer, moving the scan start past newly answered ones.
    fn scan_start(&mut self, phase: Phase) -> usize {
        let here = (self.current, phase);
        if (self.scan_from.step, self.scan_from.phase) != here {
            self.scan_from = ScanFrom {
                step: here.0,
                phase,
                index: 0,
            };
        }
        let Some(step) = self.steps.get(self.current) else {
            return 0;
        };
        let tasks = step.tasks(phase);
        let mut i = self.scan_from.index.min(tasks.len());
        while tasks.get(i).is_some_and(|t| t.result.is_some()) {
            i += 1;
        }
        self.scan_from.index = i;
        i
    }

    /// Where the last scan of `phase` started, without moving it.
    fn scan_hint(&self, phase: Phase) -> usize {
        if (self.scan_from.step, self.scan_from.phase) == (self.current, phase) {
            self.scan_from.index
        } else {
            0
        }
    }

    /// A running task worth backing up on an idle `worker`, if any.
    fn straggler(&self, worker: WorkerId, phase: Phase, now: u64) -> Option<usize> {
        let w = self.workers.get(&worker)?;
        if !w.running.is_empty() {
            return None;
        }
        let step = self.steps.get(self.current)?;
        let tasks = step.tasks(phase);
        let from = self.scan_hint(phase).min(tasks.len());
        if tasks[from..].iter().any(Task::is_pending)
            || (phase == Phase::Map && !step.inputs_closed)
        {
            return None;
        }
        let mut times: Vec<u64> = tasks
            .iter()
            .filter_map(|t| t.result.as_ref().map(|r| r.elapsed_ms))
            .collect();
        if times.is_empty() {
            return None;
        }
        let middle = times.len() / 2;
        let (_, &mut median, _) = times.select_nth_unstable(middle);
        let threshold = (median * self.config.speculate_factor).max(self.config.speculate_after_ms);
        tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.result.is_none() && t.attempts.len() < 2 + t.failures as usize)
            .filter_map(|(i, t)| {
                let mut running = t.running();
                let only = running.next()?;
                if running.next().is_some()
                    || only.worker == worker
                    || t.failed_on.contains(&worker)
                    || t.check.as_ref().is_some_and(|c| c.has_claim_from(worker))
                {
                    return None;
                }
                let age = now.saturating_sub(only.started);
                (age > threshold).then_some((i, age))
            })
            .max_by_key(|(_, age)| *age)
            .map(|(i, _)| i)
    }

    fn lease_in(
        &mut self,
        step_no: usize,
        worker: WorkerId,
        phase: Phase,
        index: usize,
        speculative: bool,
        now: u64,
    ) -> Leased {
        let lease_ms = self.config.lease_ms;
        let (inputs, partitions, attempt_id) = {
            let step = &self.steps[step_no];
            let task = &step.tasks(phase)[index];
            let n = self.config.attempt_base + task.attempts.len() as u32 + 1;
            let parts = if phase == Phase::Map && !step.map_only() {
                step.reduces
            } else {
                0
            };
            (
                task.inputs.clone(),
                parts,
                AttemptId {
                    task: task.id,
                    attempt: n,
                },
            )
        };
        let outputs: Vec<OutputSlot> = if partitions == 0 {
            vec![OutputSlot {
                partition: if phase == Phase::Reduce {
                    index as u32
                } else {
                    0
                },
                bucket: BucketId::task_output(&attempt_id),
                key: BucketKey::random(),
            }]
        } else {
            (0..partitions)
                .map(|p| OutputSlot {
                    partition: p,
                    bucket: BucketId::map_output(&attempt_id, p),
                    key: BucketKey::random(),
                })
                .collect()
        };
        let task = &mut self.steps[step_no].tasks_mut(phase)[index];
        task.attempts.push(Attempt {
            id: attempt_id,
            worker,
            started: now,
            lease_until: now + lease_ms,
            status: AttemptStatus::Running,
            outputs: outputs.clone(),
            probe: false,
        });
        let w = self.workers.entry(worker).or_default();
        w.running.insert(attempt_id);
        if let Some(n) = w.ringer_after.as_mut() {
            *n = n.saturating_sub(1);
        }
        if step_no == 0 && phase == Phase::Map {
            w.input_buckets.insert(index as u32);
        }
        self.tally.launched += 1;
        if speculative {
            self.tally.speculative += 1;
        }
        if task_is_checked(&self.steps[step_no].tasks(phase)[index]) {
            self.tally.verification_copies += 1;
        }
        Leased {
            attempt: attempt_id,
            inputs,
            outputs,
            speculative,
        }
    }

    fn find(&mut self, attempt: &AttemptId) -> Option<(&mut Task, usize)> {
        let step = self.steps.get_mut(attempt.task.step as usize)?;
        let phase = match attempt.task.kind {
            TaskKind::Map => Phase::Map,
            TaskKind::Reduce => Phase::Reduce,
        };
        let task = step.tasks_mut(phase).get_mut(attempt.task.index as usize)?;
        let pos = task.attempts.iter().position(|a| a.id == *attempt)?;
        Some((task, pos))
    }

    /// Extends the leases of what `worker` says it runs, without collecting
    /// its pending cancellations (those go with the next heartbeat).
    pub fn extend(&mut self, worker: WorkerId, running: &[AttemptId], now: u64) {
        let lease_ms = self.config.lease_ms;
        for id in running {
            if let Some((task, pos)) = self.find(id)
                && task.attempts[pos].worker == worker
                && task.attempts[pos].status == AttemptStatus::Running
            {
                task.attempts[pos].lease_until = now + lease_ms;
            }
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_seen = now;
        }
    }

    /// Extends the leases of what `worker` says it runs; returns attempts it
    /// should abandon.
    pub fn heartbeat(
        &mut self,
        worker: WorkerId,
        running: &[AttemptId],
        now: u64,
    ) -> Vec<AttemptId> {
        let lease_ms = self.config.lease_ms;
        let mut cancel = Vec::new();
        for id in running {
            match self.find(id) {
                Some((task, pos))
                    if task.attempts[pos].worker == worker
                        && task.attempts[pos].status == AttemptStatus::Running =>
                {
                    task.attempts[pos].lease_until = now + lease_ms;
                }
                _ => cancel.push(*id),
            }
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_seen = now;
            cancel.append(&mut w.cancels);
        }
        cancel.sort();
        cancel.dedup();
        cancel
    }

    /// Checks a report against the attempt's lease and assigned buckets,
    /// changing nothing (so outputs are looked up only for real leases).
    pub fn check_report(
        &mut self,
        worker: WorkerId,
        attempt: &AttemptId,
        written: &[WrittenBucket],
    ) -> Result<(), Rejected> {
        let (task, pos) = self
            .find(attempt)
            .ok_or_else(|| Rejected::LeaseLost(attempt.to_string()))?;
        let a = &task.attempts[pos];
        if a.worker != worker || a.status != AttemptStatus::Running {
            return Err(Rejected::LeaseLost(attempt.to_string()));
        }
        match_outputs(&a.outputs, written)
            .map(|_| ())
            .map_err(|why| Rejected::BadOutputs(attempt.to_string(), why))
    }

    /// Takes a successful attempt's outputs: the task's answer, or one copy
    /// of it to compare with others.
    pub fn succeed(
        &mut self,
        worker: WorkerId,
        attempt: &AttemptId,
        written: &[WrittenBucket],
        counters: &Counters,
        elapsed_ms: u64,
    ) -> Result<(), Rejected> {
        let lost = || Rejected::LeaseLost(attempt.to_string());
        let (task, pos) = self.find(attempt).ok_or_else(lost)?;
        let a = &task.attempts[pos];
        if a.worker != worker || a.status != AttemptStatus::Running {
            return Err(lost());
        }
        let outputs = match_outputs(&a.outputs, written)
            .map_err(|why| Rejected::BadOutputs(attempt.to_string(), why))?;
        task.attempts[pos].status = AttemptStatus::Succeeded;
        let settled = task.result.is_some();
        let ringer = task.known && task.attempts[pos].probe;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.running.remove(attempt);
            w.done += 1;
        }
        if !settled {
            let claim = Claim {
                worker,
                trusted: self.trusted(worker),
                attempt: *attempt,
                outputs,
                counters: counters.clone(),
                elapsed_ms,
            };
            self.take_claim(attempt.task, claim);
        } else if ringer {
            self.judge_ringer(worker, attempt.task, &outputs);
        }
        self.advance();
        Ok(())
    }

    fn task_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        let phase = match id.kind {
            TaskKind::Map => Phase::Map,
            TaskKind::Reduce => Phase::Reduce,
        };
        self.steps
            .get_mut(id.step as usize)?
            .tasks_mut(phase)
            .get_mut(id.index as usize)
    }

    /// An answer for a task not yet settled: taken, held for a copy to
    /// compare with, or compared with the copies before it.
    fn take_claim(&mut self, id: TaskId, claim: Claim) {
        let trust = self
            .workers
            .get(&claim.worker)
            .map(|w| w.standing.trust)
            .unwrap_or(0.0);
        let replicate = !claim.trusted
            && self.draws.uniform() < self.limits.verify.replication_probability(trust);
        let Some(task) = self.task_mut(id) else {
            return;
        };
        match task.check.take() {
            None if replicate => {
                task.check = Some(Check {
                    claims: vec![claim],
                })
            }
            None => {
                let verified = claim.trusted;
                self.accept(id, claim, verified);
            }
            Some(mut check) => {
                check.claims.push(claim);
                self.settle(id, check);
            }
        }
    }

    fn settle(&mut self, id: TaskId, check: Check) {
        match check.settle() {
            Settled::Open { arbiter } => {
                if arbiter && check.claims.len() == 2 {
                    self.tally.disputes += 1;
                    tracing::info!("copies of task {id} disagree: it goes to an arbiter");
                }
                if let Some(task) = self.task_mut(id) {
                    task.check = Some(check);
                }
            }
            Settled::Won {
                winner,
                agreed,
                liars,
            } => {
                let Some(claim) = check.claims.get(winner).cloned() else {
                    return;
                };
                if !liars.is_empty() && check.claims.len() == 2 {
                    // Settled at once by the owner's own worker's copy.
                    self.tally.disputes += 1;
                }
                self.accept(id, claim, true);
                for w in agreed {
                    if !self.trusted(w) {
                        self.events.push(TrustEvent::Agreed(w));
                    }
                }
                for w in liars {
                    self.ban(w);
                }
            }
            Settled::Deadlock => {
                self.state = JobState::Failed {
                    task: id.to_string(),
                    reason: format!(
                        "{} copies of the task disagree and no answer has a majority: is the job code nondeterministic? (verification compares the copies' sorted output lines; tormr.verify=off turns it off)",
                        check.claims.len()
                    ),
                    stderr_tail: String::new(),
                };
            }
        }
    }

    /// Makes `claim` the task's answer and cancels any other copy running.
    fn accept(&mut self, id: TaskId, claim: Claim, verified: bool) {
        let counters = claim.counters.clone();
        let Some(task) = self.task_mut(id) else {
            return;
        };
        task.result_by = Some(claim.worker);
        task.verified = verified;
        // A ringer answered by a volunteer is no test of volunteers.
        task.known = task.ringer && claim.trusted;
        task.ringer = task.known;
        task.check = None;
        task.result = Some(claim.into_result());
        let mut losers = Vec::new();
        for other in task
            .attempts
            .iter_mut()
            .filter(|o| o.status == AttemptStatus::Running)
        {
            other.status = AttemptStatus::Cancelled;
            losers.push((other.worker, other.id));
        }
        for (w, id) in losers {
            if let Some(ws) = self.workers.get_mut(&w) {
                ws.running.remove(&id);
                ws.cancels.push(id);
            }
        }
        self.counters.merge(&counters);
        self.settled.push(id);
        self.unstored.insert(id);
    }

    /// Bans a worker whose answer lost a dispute: its running attempts are
    /// lost, its copies in open checks withdrawn, and every answer of its
    /// that nobody confirmed is recomputed (with whatever was built on it).
    fn ban(&mut self, liar: WorkerId) {
        let Some(ws) = self.workers.get_mut(&liar) else {
            return;
        };
        if ws.banned {
            return;
        }
        ws.banned = true;
        ws.alive = false;
        ws.running.clear();
        self.tally.banned += 1;
        self.events.push(TrustEvent::Banned(liar));
        tracing::warn!("worker #{liar} answered a task wrongly: banned from the job");
        let mut void = Vec::new();
        for step in &mut self.steps {
            for task in step.maps.iter_mut().chain(step.reduce_tasks.iter_mut()) {
                for a in task.attempts.iter_mut() {
                    if a.worker == liar && a.status == AttemptStatus::Running {
                        a.status = AttemptStatus::Lost;
                    }
                }
                if let Some(check) = &mut task.check {
                    check.claims.retain(|c| c.worker != liar);
                    if check.claims.is_empty() {
                        task.check = None;
                    }
                }
                if task.result.is_some() && task.result_by == Some(liar) && !task.verified {
                    void.push(task.id);
                }
            }
        }
        for id in void {
            self.invalidate(id);
        }
    }

    /// Forgets a task's answer; if later work was built on it, that work is
    /// forgotten too and the job steps back.
    fn invalidate(&mut self, id: TaskId) {
        let s = id.step as usize;
        let Some(step) = self.steps.get(s) else {
            return;
        };
        let consumed = s < self.current
            || (id.kind == TaskKind::Map && !step.map_only() && step.reduces_created);
        if let Some(t) = self.task_mut(id) {
            t.result = None;
            t.result_by = None;
            t.verified = false;
        }
        self.scan_from.index = 0;
        self.forgotten.push(id);
        self.tally.recomputed += 1;
        if consumed {
            self.roll_back(id);
        }
        self.recount();
    }

    fn roll_back(&mut self, id: TaskId) {
        let s = id.step as usize;
        let mut cleared = Vec::new();
        if id.kind == TaskKind::Map
            && let Some(step) = self.steps.get_mut(s)
            && !step.map_only()
        {
            cleared.append(&mut step.reduce_tasks);
            step.reduces_created = false;
        }
        for later in self.steps.iter_mut().skip(s + 1) {
            cleared.append(&mut later.maps);
            cleared.append(&mut later.reduce_tasks);
            later.inputs_closed = false;
            later.reduces_created = false;
        }
        self.current = self.current.min(s);
        for t in cleared {
            if t.result.is_some() {
                self.forgotten.push(t.id);
                self.tally.recomputed += 1;
            }
            for a in t
                .attempts
                .iter()
                .filter(|a| a.status == AttemptStatus::Running)
            {
                if let Some(ws) = self.workers.get_mut(&a.worker) {
                    ws.running.remove(&a.id);
                    ws.cancels.push(a.id);
                }
            }
        }
        tracing::info!("the job steps back to step {s}: later work used a banned worker's answer");
    }

    fn recount(&mut self) {
        let mut c = Counters::default();
        for step in &self.steps {
            for t in step.maps.iter().chain(&step.reduce_tasks) {
                if let Some(r) = &t.result {
                    c.merge(&r.counters);
                }
            }
        }
        self.counters = c;
    }

    /// Settles checks that no live worker can add a copy to: a lone answer
    /// is taken unverified; a dispute nobody can arbitrate fails the job
    /// (with `trusted` arbitration it waits, and [`Scheduler::stuck`] says so).
    fn settle_unverifiable(&mut self) {
        if self.state != JobState::Running || !self.workers.values().any(|w| w.alive) {
            return;
        }
        let Some(phase) = self.steps.get(self.current).map(Step::phase) else {
            return;
        };
        let from = self.scan_start(phase);
        let Some(step) = self.steps.get(self.current) else {
            return;
        };
        // Called on every assignment: cheap unless some check is waiting.
        let waiting = || {
            step.tasks(phase)[from..]
                .iter()
                .filter(|t| t.check.is_some() && t.is_pending())
        };
        if waiting().next().is_none() {
            return;
        }
        let alive: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.alive)
            .map(|(id, _)| *id)
            .collect();
        let orphans: Vec<(TaskId, usize)> = waiting()
            .filter(|t| !alive.iter().any(|w| self.open_for(t, *w)))
            .filter_map(|t| Some((t.id, t.check.as_ref()?.claims.len())))
            .collect();
        for (id, claims) in orphans {
            if claims == 1 {
                let Some(claim) = self
                    .task_mut(id)
                    .and_then(|t| t.check.take())
                    .and_then(|c| c.claims.into_iter().next())
                else {
                    continue;
                };
                tracing::info!(
                    "task {id} cannot be verified: no other live worker; its answer is taken as is"
                );
                self.accept(id, claim, false);
            } else if !arbiter_must_be_trusted(&self.limits.verify, self.trusted_alive()) {
                self.state = JobState::Failed {
                    task: id.to_string(),
                    reason: "copies of the task disagree and no other live worker is left to settle it; run the job again with more workers (or your own --trusted-by worker)".into(),
                    stderr_tail: String::new(),
                };
                return;
            }
        }
        self.advance();
    }

    /// Records a failed attempt; fails the job once the task is out of attempts.
    pub fn fail(
        &mut self,
        worker: WorkerId,
        attempt: &AttemptId,
        reason: &str,
        stderr_tail: &str,
    ) -> Result<(), Rejected> {
        let max = match attempt.task.kind {
            TaskKind::Map => self.limits.map_attempts,
            TaskKind::Reduce => self.limits.reduce_attempts,
        };
        let lost = || Rejected::LeaseLost(attempt.to_string());
        let (task, pos) = self.find(attempt).ok_or_else(lost)?;
        if task.attempts[pos].worker != worker
            || task.attempts[pos].status != AttemptStatus::Running
        {
            return Err(lost());
        }
        task.attempts[pos].status = AttemptStatus::Failed;
        task.failures += 1;
        task.failed_on.insert(worker);
        task.last_error = Some((reason.to_owned(), stderr_tail.to_owned()));
        let give_up = task.result.is_none() && task.failures >= max;
        let task_id = task.id;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.running.remove(attempt);
            w.failed += 1;
        }
        self.tally.failed += 1;
        if give_up {
            self.state = JobState::Failed {
                task: task_id.to_string(),
                reason: format!("{reason} ({max} attempts failed)"),
                stderr_tail: stderr_tail.to_owned(),
            };
        }
        Ok(())
    }

    /// Expires leases and drops silent workers. Returns whether anything changed.
    pub fn tick(&mut self, now: u64) -> bool {
        let changed = self.expire(now);
        self.settle_unverifiable();
        changed
    }

    fn expire(&mut self, now: u64) -> bool {
        let timeout = self.config.worker_timeout_ms;
        let task_limit = self
            .limits
            .task_timeout_secs
            .saturating_mul(1000)
            .saturating_add(self.config.lease_ms);
        let mut dropped = BTreeSet::new();
        for (id, w) in self.workers.iter_mut() {
            if w.alive && w.last_seen + timeout < now {
                w.alive = false;
                dropped.insert(*id);
            }
        }
        let mut changed = !dropped.is_empty();
        let mut freed: Vec<(WorkerId, AttemptId)> = Vec::new();
        let mut overran: Vec<(WorkerId, AttemptId)> = Vec::new();
        for step in &mut self.steps {
            for task in step.maps.iter_mut().chain(step.reduce_tasks.iter_mut()) {
                for a in task
                    .attempts
                    .iter_mut()
                    .filter(|a| a.status == AttemptStatus::Running)
                {
                    if now.saturating_sub(a.started) > task_limit {
                        // The worker should have killed it; it keeps the lease
                        // alive but never finishes: a failure, not a loss.
                        overran.push((a.worker, a.id));
                    } else if dropped.contains(&a.worker) || a.lease_until < now {
                        a.status = AttemptStatus::Lost;
                        freed.push((a.worker, a.id));
                    }
                }
            }
        }
        for (w, id) in &freed {
            if let Some(ws) = self.workers.get_mut(w) {
                ws.running.remove(id);
                ws.cancels.push(*id);
            }
            self.tally.lost += 1;
            changed = true;
        }
        for (w, id) in overran {
            let _ = self.fail(w, &id, "the task ran past its time limit", "");
            if let Some(ws) = self.workers.get_mut(&w) {
                ws.cancels.push(id);
            }
            changed = true;
        }
        changed
    }

    /// Moves through phases and steps that are complete.
    fn advance(&mut self) {
        while self.state == JobState::Running {
            let Some(step) = self.steps.get_mut(self.current) else {
                break;
            };
            if step.maps_done() && !step.map_only() && !step.reduces_created {
                let inputs: Vec<Vec<BucketRef>> = (0..step.reduces)
                    .map(|r| {
                        step.maps
                            .iter()
                            .filter_map(|m| {
                                m.result
                                    .as_ref()
                                    .and_then(|res| res.outputs.get(r as usize).cloned())
                            })
                            .collect()
                    })
                    .collect();
                let step_no = self.current as u32;
                step.reduce_tasks = inputs
                    .into_iter()
                    .enumerate()
                    .map(|(r, ins)| {
                        Task::new(
                            TaskId {
                                step: step_no,
                                kind: TaskKind::Reduce,
                                index: r as u32,
                            },
                            ins,
                        )
                    })
                    .collect();
                step.reduces_created = true;
            }
            if !step.done() {
                break;
            }
            let outputs = step.outputs();
            self.current += 1;
            match self.steps.get_mut(self.current) {
                None => self.state = JobState::Succeeded,
                Some(next) => {
                    let step_no = self.current as u32;
                    next.maps = outputs
                        .into_iter()
                        .enumerate()
                        .map(|(i, out)| {
                            Task::new(
                                TaskId {
                                    step: step_no,
                                    kind: TaskKind::Map,
                                    index: i as u32,
                                },
                                vec![out],
                            )
                        })
                        .collect();
                    next.inputs_closed = true;
                }
            }
        }
    }

    /// Fails the job for a reason outside any task.
    pub fn abort(&mut self, reason: &str) {
        if self.state == JobState::Running {
            self.state = JobState::Failed {
                task: "-".into(),
                reason: reason.to_owned(),
                stderr_tail: String::new(),
            };
        }
    }

    /// The task's result if `attempt` is the one that won it.
    pub fn result_of(&mut self, attempt: &AttemptId) -> Option<TaskResult> {
        let (task, _) = self.find(attempt)?;
        task.result
            .as_ref()
            .filter(|r| r.attempt == *attempt)
            .cloned()
    }

    /// The task's settled answer, whichever copy gave it.
    pub fn result_of_task(&mut self, task: &TaskId) -> Option<TaskResult> {
        self.task_mut(*task)?.result.clone()
    }

    /// Why the job cannot progress, if it cannot.
    pub fn stuck(&self) -> Option<String> {
        if let Some(why) = self.waiting_for_arbiter() {
            return Some(why);
        }
        if self.state == JobState::Running
            && !self.workers.is_empty()
            && self.workers.values().all(|w| !w.alive)
        {
            return Some(format!(
                "all {} worker(s) left the job (silent for too long); run it again to gather a new cluster",
                self.workers.len()
            ));
        }
        let cap = self.limits.max_buckets_per_worker?;
        let step = self.steps.first()?;
        if self.current != 0
            || step.phase() != Phase::Map
            || !step.maps.iter().any(Task::is_pending)
        {
            return None;
        }
        let alive: Vec<&WorkerState> = self.workers.values().filter(|w| w.alive).collect();
        let all_capped = !alive.is_empty()
            && alive
                .iter()
                .all(|w| w.input_buckets.len() as u32 >= cap && w.running.is_empty());
        all_capped.then(|| {
            let left = step.maps.iter().filter(|t| t.is_pending()).count();
            format!(
                "every worker ({}) already holds its cap of {cap} input buckets and {left} buckets remain: raise tormr.max.buckets.per.worker or ask for more workers",
                alive.len()
            )
        })
    }

    /// A dispute that only a trusted worker may settle, with none alive.
    fn waiting_for_arbiter(&self) -> Option<String> {
        if self.state != JobState::Running || self.trusted_alive() {
            return None;
        }
        let step = self.steps.get(self.current)?;
        let task = step
            .tasks(step.phase())
            .iter()
            .find(|t| t.check.as_ref().is_some_and(|c| c.claims.len() >= 2))?;
        arbiter_must_be_trusted(&self.limits.verify, false).then(|| {
            format!(
                "copies of task {} disagree and tormr.verify.arbitration=trusted, but none of your own workers is in the job: start one with `tormr worker --trusted-by YOUR_OWNER_KEY`, or allow majority arbitration",
                task.id
            )
        })
    }

    /// Progress of the current and finished phases.
    pub fn phases(&self) -> Vec<PhaseStatus> {
        let mut out = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let mut push = |kind, tasks: &Vec<Task>, open: bool| {
                out.push(PhaseStatus {
                    step: i as u32,
                    kind: Some(kind),
                    total: tasks.len() as u32,
                    done: tasks
                        .iter()
                        .filter(|t| t.result.is_some() && !self.unstored.contains(&t.id))
                        .count() as u32,
                    running: tasks
                        .iter()
                        .filter(|t| t.result.is_none() && t.running().next().is_some())
                        .count() as u32,
                    open,
                });
            };
            push(TaskKind::Map, &step.maps, !step.inputs_closed);
            if !step.map_only() {
                let expected = if step.reduces_created {
                    &step.reduce_tasks
                } else {
                    &Vec::new()
                };
                push(TaskKind::Reduce, expected, !step.reduces_created);
                if let Some(last) = out.last_mut()
                    && !step.reduces_created
                {
                    last.total = step.reduces;
                }
            }
        }
        out
    }

    pub fn workers(&self) -> Vec<WorkerSummary> {
        self.workers
            .iter()
            .map(|(id, w)| WorkerSummary {
                id: *id,
                alive: w.alive,
                running: w.running.len() as u32,
                done: w.done,
                failed: w.failed,
                input_buckets: w.input_buckets.len() as u32,
                banned: w.banned,
            })
            .collect()
    }

    /// Framework counters about attempts, added to the job's counters.
    pub fn job_counters(&self) -> Counters {
        let mut c = self.counters.clone();
        let t = &self.tally;
        c.add(TORMR, "attempts launched", t.launched as i64);
        c.add(TORMR, "attempts failed", t.failed as i64);
        c.add(TORMR, "attempts lost", t.lost as i64);
        c.add(TORMR, "speculative attempts", t.speculative as i64);
        c.add(TORMR, "verification copies", t.verification_copies as i64);
        c.add(TORMR, "verification disputes", t.disputes as i64);
        c.add(TORMR, "tasks recomputed after a ban", t.recomputed as i64);
        c.add(TORMR, "workers banned", t.banned as i64);
        c.add(TORMR, "ringers run by volunteers", t.ringer_probes as i64);
        c.add(TORMR, "ringers failed", t.ringers_failed as i64);
        c
    }
}

fn task_is_checked(task: &Task) -> bool {
    task.check.is_some()
}

/// Pairs reported buckets with their slots (keys), refusing anything else.
fn match_outputs(
    slots: &[OutputSlot],
    written: &[WrittenBucket],
) -> Result<Vec<BucketRef>, String> {
    if slots.len() != written.len() {
        return Err(format!(
            "expected {} output buckets, got {}",
            slots.len(),
            written.len()
        ));
    }
    slots
        .iter()
        .zip(written)
        .map(|(slot, w)| {
            if slot.partition != w.partition || slot.bucket != w.bucket {
                return Err(format!(
                    "partition {} should be bucket {}, not {}",
                    slot.partition, slot.bucket, w.bucket
                ));
            }
            Ok(BucketRef {
                bucket: w.bucket.clone(),
                key: slot.key.clone(),
                sealed_bytes: w.summary.sealed_bytes,
                plain_bytes: w.summary.plain_bytes,
                plain_digest: w.summary.plain_digest,
                canonical_digest: w.canonical_digest,
                records: w.records,
                source: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tormr_core::encoding::Digest;
    use tormr_core::partition::KeySpec;
    use tormr_core::seal::SealSummary;
    use tormr_core::spec::StepSpec;

    fn spec(steps: &[u32], cap: Option<u32>) -> JobSpec {
        JobSpec {
            name: "t".into(),
            steps: steps
                .iter()
                .map(|&r| StepSpec {
                    mapper: None,
                    combiner: None,
                    reducer: None,
                    reduces: r,
                    keys: KeySpec::default(),
                    conf: Default::default(),
                })
                .collect(),
            files: vec![],
            env: Default::default(),
            conf: Default::default(),
            limits: JobLimits {
                max_buckets_per_worker: cap,
                map_attempts: 2,
                // These tests are about scheduling; verification has its own.
                verify: tormr_core::spec::VerifyPolicy {
                    enabled: false,
                    ..Default::default()
                },
                ..JobLimits::default()
            },
            image: None,
            pachyderm: None,
        }
    }

    fn input(i: u32) -> BucketRef {
        BucketRef {
            bucket: BucketId::input(i),
            key: BucketKey::random(),
            sealed_bytes: 10,
            plain_bytes: 10,
            plain_digest: None,
            canonical_digest: None,
            records: 1,
            source: None,
        }
    }

    fn written(l: &Leased) -> Vec<WrittenBucket> {
        l.outputs
            .iter()
            .map(|o| WrittenBucket {
                partition: o.partition,
                bucket: o.bucket.clone(),
                summary: SealSummary {
                    plain_bytes: 1,
                    plain_digest: Some(Digest::default()),
                    sealed_bytes: 1,
                },
                records: 1,
                canonical_digest: None,
                receipt: None,
            })
            .collect()
    }

    /// An answer for `l`: the honest one names the task, a lie does not.
    fn answer(l: &Leased, honest: bool) -> Vec<WrittenBucket> {
        let truth = if honest {
            Digest::of(l.attempt.task.to_string().as_bytes())
        } else {
            Digest::of(format!("lie {}", l.attempt).as_bytes())
        };
        let mut w = written(l);
        for b in &mut w {
            b.canonical_digest = Some(truth);
        }
        w
    }

    fn verifying(steps: &[u32], policy: tormr_core::spec::VerifyPolicy) -> Scheduler {
        let mut sp = spec(steps, None);
        sp.limits.verify = policy;
        Scheduler::new(
            &sp,
            SchedulerConfig {
                seed: Some(7),
                ..SchedulerConfig::default()
            },
        )
    }

    /// Runs a job whose workers lie with the given rates (1.0: always);
    /// `trusted` workers are the owner's. Returns the scheduler at the end.
    fn run_with_liars(
        steps: &[u32],
        inputs: u32,
        lie_rates: &[f64],
        trusted: &[bool],
        policy: tormr_core::spec::VerifyPolicy,
    ) -> Scheduler {
        let mut s = verifying(steps, policy);
        for (w, t) in trusted.iter().enumerate() {
            s.join_as(
                w as WorkerId,
                0,
                Standing {
                    trust: 0.0,
                    trusted: *t,
                },
            );
        }
        for i in 0..inputs {
            s.add_input(input(i));
        }
        s.close_input();
        let mut lies = crate::verify::Draws::new(99);
        let mut now = 0;
        while *s.state() == JobState::Running && now < 10_000 {
            now += 1;
            let leases: Vec<(WorkerId, Leased)> = (0..trusted.len() as WorkerId)
                .filter_map(|w| take(&mut s, w, now).map(|l| (w, l)))
                .collect();
            for (w, l) in leases {
                let honest = lies.uniform() >= lie_rates[w as usize];
                let _ = s.succeed(w, &l.attempt, &answer(&l, honest), &Counters::default(), 5);
            }
            s.tick(now);
        }
        s
    }

    fn all_answers_honest(s: &Scheduler) -> bool {
        s.steps.iter().all(|step| {
            step.maps.iter().chain(&step.reduce_tasks).all(|t| {
                t.result.as_ref().is_some_and(|r| {
                    r.outputs.iter().all(|o| {
                        o.canonical_digest == Some(Digest::of(t.id.to_string().as_bytes()))
                    })
                })
            })
        })
    }

    #[test]
    fn ringers_alone_catch_a_liar_when_replication_is_off() {
        // Worker 0 is the owner's, 1 always lies, 2 is an honest volunteer.
        let policy = |ringers| tormr_core::spec::VerifyPolicy {
            enabled: false,
            ringers,
            ..Default::default()
        };
        let workers = [true, false, false];
        let s = run_with_liars(&[2], 30, &[0.0, 1.0, 0.0], &workers, policy(2));
        assert_eq!(*s.state(), JobState::Succeeded);
        let ringers: Vec<&Task> = s.steps[0].maps.iter().filter(|t| t.ringer).collect();
        assert_eq!(ringers.len(), 2);
        assert!(
            ringers.iter().all(|t| t.known && t.result_by == Some(0)),
            "only the owner's worker answers a ringer first"
        );
        assert!(
            s.is_banned(1),
            "the liar failed its ringer: {:?}",
            s.tally()
        );
        assert!(!s.is_banned(2));
        assert_eq!(s.tally().ringers_failed, 1);
        assert_eq!(s.tally().ringer_probes, 2, "each volunteer was tested once");
        assert!(all_answers_honest(&s), "the liar's answers were recomputed");

        // Without ringers (and without replication) the lies stand.
        let blind = run_with_liars(&[2], 30, &[0.0, 1.0, 0.0], &workers, policy(0));
        assert!(!blind.is_banned(1));
        assert!(!all_answers_honest(&blind));
    }

    #[test]
    fn a_volunteer_takes_a_ringer_only_when_no_own_worker_is_there() {
        let policy = tormr_core::spec::VerifyPolicy {
            enabled: false,
            ringers: 1,
            ..Default::default()
        };
        let mut s = verifying(&[0], policy);
        s.join(1, 0);
        s.add_input(input(0));
        for i in 1..8 {
            s.add_input(input(i));
        }
        s.close_input();
        let ringer = s.steps[0].maps.iter().position(|t| t.ringer).unwrap();
        // The volunteer alone runs everything, the ringer last; answered by
        // a volunteer, it tests nobody.
        let mut order = Vec::new();
        while let Some(l) = take(&mut s, 1, 1) {
            order.push(l.attempt.task.index as usize);
            s.succeed(1, &l.attempt, &answer(&l, true), &Counters::default(), 5)
                .unwrap();
        }
        assert_eq!(order.last(), Some(&ringer), "{order:?}");
        assert!(!s.steps[0].maps[ringer].known);
        assert_eq!(*s.state(), JobState::Succeeded);
    }

    #[test]
    fn a_resumed_scheduler_skips_restored_tasks_and_numbers_attempts_apart() {
        // The first run: one map of two settles (and is handed out to be
        // stored), the other is leased when the job master dies.
        let owner = Standing {
            trust: 1.0,
            trusted: true,
        };
        let mut first = Scheduler::new(&spec(&[0], None), SchedulerConfig::default());
        first.join_as(0, 0, owner);
        first.add_input(input(0));
        first.add_input(input(1));
        first.close_input();
        let done = take(&mut first, 0, 1).unwrap();
        first
            .succeed(0, &done.attempt, &written(&done), &Counters::default(), 5)
            .unwrap();
        let lost = take(&mut first, 0, 2).unwrap();
        let settled = first.take_settled();
        assert_eq!(settled.len(), 1);
        assert!(first.take_settled().is_empty(), "handed out once");
        assert_eq!(first.phases()[0].done, 0, "not done until stored");
        first.stored(settled[0].0);
        assert_eq!(first.phases()[0].done, 1, "done once stored");

        // The resumed run: restored inputs and the settled task.
        let mut again = Scheduler::new(
            &spec(&[0], None),
            SchedulerConfig {
                attempt_base: 1000,
                ..SchedulerConfig::default()
            },
        );
        again.add_input(input(0));
        again.add_input(input(1));
        again.close_input();
        for (task, result) in settled {
            again.restore(task, result);
        }
        again.join_as(0, 0, owner);
        let redo = take(&mut again, 0, 3).unwrap();
        assert_eq!(
            redo.attempt.task, lost.attempt.task,
            "only the lost task runs"
        );
        assert_eq!(redo.attempt.attempt, 1001);
        assert_ne!(redo.outputs[0].bucket, lost.outputs[0].bucket);
        again
            .succeed(0, &redo.attempt, &written(&redo), &Counters::default(), 5)
            .unwrap();
        assert_eq!(*again.state(), JobState::Succeeded);
        assert_eq!(again.tally().launched, 1);
    }

    #[test]
    fn a_newcomers_answers_are_recomputed_elsewhere_and_agreement_earns_trust() {
        let mut s = verifying(&[0], Default::default());
        s.join(0, 0);
        s.join(1, 0);
        s.add_input(input(0));
        s.close_input();
        let first = take(&mut s, 0, 1).unwrap();
        s.succeed(
            0,
            &first.attempt,
            &answer(&first, true),
            &Counters::default(),
            5,
        )
        .unwrap();
        assert_eq!(
            *s.state(),
            JobState::Running,
            "one copy is not enough at trust 0"
        );
        assert!(
            take(&mut s, 0, 2).is_none(),
            "the copy goes to another worker"
        );
        let copy = take(&mut s, 1, 2).unwrap();
        assert_eq!(copy.attempt.task, first.attempt.task);
        s.succeed(
            1,
            &copy.attempt,
            &answer(&copy, true),
            &Counters::default(),
            5,
        )
        .unwrap();
        assert_eq!(*s.state(), JobState::Succeeded);
        assert_eq!(
            s.take_events(),
            vec![TrustEvent::Agreed(0), TrustEvent::Agreed(1)]
        );
        assert_eq!(s.tally().verification_copies, 1);
    }

    #[test]
    fn a_liar_is_caught_by_the_owners_worker_banned_and_its_answers_recomputed() {
        // Worker 0 always lies, 1 and 2 are honest volunteers, 3 is the owner's.
        let s = run_with_liars(
            &[3],
            12,
            &[1.0, 0.0, 0.0, 0.0],
            &[false, false, false, true],
            Default::default(),
        );
        assert_eq!(*s.state(), JobState::Succeeded);
        assert!(s.is_banned(0));
        assert!(!s.is_banned(1) && !s.is_banned(2));
        assert!(all_answers_honest(&s), "no lie survived");
        assert!(s.tally().disputes >= 1 || s.tally().verification_copies >= 1);
    }

    #[test]
    fn an_occasional_liar_ends_banned_with_every_answer_honest() {
        // Worker 0 lies on 10% of its tasks; the owner trusts none of the
        // others, so disputes go to a majority of volunteers.
        let policy = tormr_core::spec::VerifyPolicy {
            trust_after: 4,
            p_min_ppm: 100_000,
            ..Default::default()
        };
        let s = run_with_liars(
            &[2, 1],
            60,
            &[0.1, 0.0, 0.0, 0.0],
            &[false, false, false, false],
            policy,
        );
        assert_eq!(*s.state(), JobState::Succeeded);
        assert!(s.is_banned(0), "the liar was caught: {:?}", s.tally());
        assert!(all_answers_honest(&s), "its lies were all recomputed");
        assert!(s.tally().recomputed > 0 || s.tally().disputes > 0);
    }

    #[test]
    fn answers_forgotten_behind_the_scan_start_are_handed_out_again() {
        // Worker 0's answers to the first two maps are taken unchecked; by
        // the time worker 1 leases the third, scans start past them. A ban
        // then forgets them, and they must be found again.
        let policy = tormr_core::spec::VerifyPolicy {
            p_min_ppm: 0,
            ..Default::default()
        };
        let mut s = verifying(&[0], policy);
        let volunteer = Standing {
            trust: 1.0,
            trusted: false,
        };
        s.join_as(0, 0, volunteer);
        s.join_as(1, 0, volunteer);
        for i in 0..3 {
            s.add_input(input(i));
        }
        s.close_input();
        for now in 1..3 {
            let l = take(&mut s, 0, now).unwrap();
            s.succeed(0, &l.attempt, &answer(&l, false), &Counters::default(), 5)
                .unwrap();
        }
        let third = take(&mut s, 1, 3).unwrap();
        assert_eq!(third.attempt.task.index, 2);
        s.ban(0);
        let again = take(&mut s, 1, 4).expect("a forgotten answer is open work");
        assert_eq!(again.attempt.task.index, 0);
    }

    #[test]
    fn a_ban_after_the_reduces_began_steps_back_and_recomputes() {
        let policy = tormr_core::spec::VerifyPolicy {
            p_min_ppm: 0,
            ..Default::default()
        };
        let mut s = verifying(&[2], policy);
        // Worker 0 has earned full trust, so its answers are taken unchecked.
        s.join_as(
            0,
            0,
            Standing {
                trust: 1.0,
                trusted: false,
            },
        );
        s.join_as(
            1,
            0,
            Standing {
                trust: 0.0,
                trusted: false,
            },
        );
        s.join_as(
            2,
            0,
            Standing {
                trust: 0.0,
                trusted: true,
            },
        );
        s.add_input(input(0));
        s.add_input(input(1));
        s.close_input();
        let m0 = take(&mut s, 0, 1).unwrap();
        s.succeed(0, &m0.attempt, &answer(&m0, false), &Counters::default(), 5)
            .unwrap();
        let m1 = take(&mut s, 2, 1).unwrap();
        s.succeed(2, &m1.attempt, &answer(&m1, true), &Counters::default(), 5)
            .unwrap();
        // The reduces began on worker 0's lie; then worker 1 (a newcomer,
        // always checked) answers a reduce, and the owner's worker the copy.
        let r = take(&mut s, 1, 2).unwrap();
        assert_eq!(r.attempt.task.kind, TaskKind::Reduce);
        s.succeed(1, &r.attempt, &answer(&r, true), &Counters::default(), 5)
            .unwrap();
        let mut forged = None;
        // Worker 0 lies on the copy of worker 1's reduce: the owner's worker settles it.
        if let Some(copy) = take(&mut s, 0, 3) {
            s.succeed(
                0,
                &copy.attempt,
                &answer(&copy, false),
                &Counters::default(),
                5,
            )
            .unwrap();
            forged = Some(copy);
        }
        assert!(forged.is_some(), "worker 0 took the verification copy");
        let arb = take(&mut s, 2, 4).unwrap();
        assert_eq!(
            arb.attempt.task, r.attempt.task,
            "the owner's worker arbitrates"
        );
        s.succeed(
            2,
            &arb.attempt,
            &answer(&arb, true),
            &Counters::default(),
            5,
        )
        .unwrap();
        assert!(s.is_banned(0));
        let forgotten = s.take_forgotten();
        assert!(
            forgotten.contains(&m0.attempt.task),
            "the liar's unchecked map is void: {forgotten:?}"
        );
        assert_eq!(s.phases()[0].done, 0, "nothing is stored yet");
        for (task, _) in s.take_settled() {
            s.stored(task);
        }
        assert_eq!(s.phases()[0].done, 1, "the job stepped back to the maps");
        // Finish the job with the honest workers.
        let mut now = 5;
        while *s.state() == JobState::Running && now < 100 {
            now += 1;
            for w in [1, 2] {
                if let Some(l) = take(&mut s, w, now) {
                    s.succeed(w, &l.attempt, &answer(&l, true), &Counters::default(), 5)
                        .unwrap();
                }
            }
        }
        assert_eq!(*s.state(), JobState::Succeeded);
        assert!(all_answers_honest(&s));
    }

    #[test]
    fn a_lone_worker_cannot_be_second_guessed() {
        let mut s = verifying(&[0], Default::default());
        s.join(0, 0);
        s.add_input(input(0));
        s.close_input();
        let l = take(&mut s, 0, 1).unwrap();
        s.succeed(0, &l.attempt, &answer(&l, true), &Counters::default(), 5)
            .unwrap();
        assert!(take(&mut s, 0, 2).is_none());
        assert_eq!(*s.state(), JobState::Succeeded, "taken unverified");
    }

    fn take(s: &mut Scheduler, w: WorkerId, now: u64) -> Option<Leased> {
        match s.assign(w, now) {
            Assignment::Task(l) => Some(*l),
            _ => None,
        }
    }

    /// Runs a job to the end with `workers` workers taking turns.
    fn run(steps: &[u32], inputs: u32, workers: u32) -> (Scheduler, Vec<u32>) {
        let mut s = Scheduler::new(&spec(steps, None), SchedulerConfig::default());
        for w in 0..workers {
            s.join(w, 0);
        }
        for i in 0..inputs {
            s.add_input(input(i));
        }
        s.close_input();
        let mut per_worker = vec![0; workers as usize];
        let mut now = 0;
        while *s.state() == JobState::Running {
            now += 1;
            let leases: Vec<(WorkerId, Leased)> = (0..workers)
                .filter_map(|w| take(&mut s, w, now).map(|l| (w, l)))
                .collect();
            assert!(!leases.is_empty(), "no progress possible");
            for (w, l) in leases {
                s.succeed(w, &l.attempt, &written(&l), &Counters::default(), 5)
                    .unwrap();
                per_worker[w as usize] += 1;
            }
        }
        (s, per_worker)
    }

    #[test]
    fn jobs_finish_with_one_two_and_three_workers() {
        for workers in 1..=3 {
            let (s, per) = run(&[3], 7, workers);
            assert_eq!(*s.state(), JobState::Succeeded);
            assert_eq!(s.outputs().len(), 3, "one output per reduce partition");
            assert_eq!(per.iter().sum::<u32>(), 7 + 3);
            assert!(per.iter().all(|&n| n > 0), "every worker got work: {per:?}");
            let (s, _) = run(&[0], 4, workers);
            assert_eq!(s.outputs().len(), 4, "map-only: one output per map");
            let (s, _) = run(&[2, 1], 5, workers);
            assert_eq!(
                s.outputs().len(),
                1,
                "two steps chain through step 0's outputs"
            );
        }
    }

    #[test]
    fn empty_input_still_runs_reducers() {
        let (s, per) = run(&[2], 0, 2);
        assert_eq!(*s.state(), JobState::Succeeded);
        assert_eq!(s.outputs().len(), 2);
        assert_eq!(per.iter().sum::<u32>(), 2);
    }

    #[test]
    fn reduce_tasks_read_their_partition_of_every_map() {
        let mut s = Scheduler::new(&spec(&[2], None), SchedulerConfig::default());
        s.join(0, 0);
        for i in 0..3 {
            s.add_input(input(i));
        }
        s.close_input();
        for _ in 0..3 {
            let l = take(&mut s, 0, 1).unwrap();
            s.succeed(0, &l.attempt, &written(&l), &Counters::default(), 1)
                .unwrap();
        }
        let r = take(&mut s, 0, 2).unwrap();
        assert_eq!(r.attempt.task.kind, TaskKind::Reduce);
        assert_eq!(r.inputs.len(), 3);
        let p = r.attempt.task.index;
        assert!(
            r.inputs
                .iter()
                .all(|b| b.bucket.as_str().ends_with(&format!("-p{p:05}")))
        );
    }

    #[test]
    fn maps_wait_for_input_to_close() {
        let mut s = Scheduler::new(&spec(&[1], None), SchedulerConfig::default());
        s.join(0, 0);
        s.add_input(input(0));
        let l = take(&mut s, 0, 1).unwrap();
        s.succeed(0, &l.attempt, &written(&l), &Counters::default(), 1)
            .unwrap();
        assert!(
            matches!(s.assign(0, 2), Assignment::Wait),
            "no reduce before input is closed"
        );
        s.add_input(input(1));
        assert!(take(&mut s, 0, 3).is_some());
    }

    #[test]
    fn bucket_cap_is_enforced() {
        let mut s = Scheduler::new(&spec(&[1], Some(2)), SchedulerConfig::default());
        s.join(0, 0);
        s.join(1, 0);
        for i in 0..5 {
            s.add_input(input(i));
        }
        s.close_input();
        for _ in 0..2 {
            let l = take(&mut s, 0, 1).unwrap();
            s.succeed(0, &l.attempt, &written(&l), &Counters::default(), 1)
                .unwrap();
        }
        assert!(matches!(
            s.assign(0, 2),
            Assignment::CapReached { held: 2, cap: 2 }
        ));
        for _ in 0..2 {
            let l = take(&mut s, 1, 3).unwrap();
            s.succeed(1, &l.attempt, &written(&l), &Counters::default(), 1)
                .unwrap();
        }
        assert!(s.stuck().is_some(), "both capped with one bucket left");
    }

    #[test]
    fn lost_leases_are_requeued_and_late_reports_refused() {
        let cfg = SchedulerConfig {
            lease_ms: 100,
            worker_timeout_ms: 1000,
            ..SchedulerConfig::default()
        };
        let mut s = Scheduler::new(&spec(&[0], None), cfg);
        s.join(0, 0);
        s.join(1, 0);
        s.add_input(input(0));
        s.close_input();
        let first = take(&mut s, 0, 0).unwrap();
        assert!(take(&mut s, 1, 1).is_none());
        // Worker 0 keeps heartbeating worker 1 is idle; lease holds.
        s.heartbeat(0, &[first.attempt], 90);
        assert!(!s.tick(150));
        // Then worker 0 goes quiet: the lease expires and worker 1 gets the task.
        assert!(s.tick(300));
        let second = take(&mut s, 1, 301).unwrap();
        assert_eq!(second.attempt.task, first.attempt.task);
        assert_ne!(second.attempt, first.attempt);
        // Worker 0's late report is refused, and its heartbeat says to cancel.
        assert!(matches!(
            s.succeed(0, &first.attempt, &written(&first), &Counters::default(), 1),
            Err(Rejected::LeaseLost(_))
        ));
        assert_eq!(s.heartbeat(0, &[first.attempt], 302), vec![first.attempt]);
        s.succeed(
            1,
            &second.attempt,
            &written(&second),
            &Counters::default(),
            1,
        )
        .unwrap();
        assert_eq!(*s.state(), JobState::Succeeded);
        assert_eq!(s.tally().lost, 1);
    }

    #[test]
    fn attempts_past_their_time_limit_fail_the_job_eventually() {
        let mut s = Scheduler::new(
            &spec(&[0], None),
            SchedulerConfig {
                lease_ms: 100,
                ..SchedulerConfig::default()
            },
        );
        s.limits.task_timeout_secs = 1;
        s.join(0, 0);
        s.add_input(input(0));
        s.close_input();
        let mut now = 0;
        for attempt in 1..=2 {
            let l = take(&mut s, 0, now).unwrap();
            assert_eq!(l.attempt.attempt, attempt);
            // The worker keeps heartbeating but the task never ends.
            for _ in 0..20 {
                now += 90;
                s.heartbeat(0, &[l.attempt], now);
                s.tick(now);
            }
        }
        assert!(
            matches!(s.state(), JobState::Failed { reason, .. } if reason.contains("time limit")),
            "{:?}",
            s.state()
        );
    }

    #[test]
    fn a_job_whose_workers_all_left_is_stuck() {
        let cfg = SchedulerConfig {
            worker_timeout_ms: 100,
            ..SchedulerConfig::default()
        };
        let mut s = Scheduler::new(&spec(&[1], None), cfg);
        assert!(
            s.stuck().is_none(),
            "no worker yet is not stuck: they may still come"
        );
        s.join(0, 0);
        s.tick(500);
        assert!(s.stuck().unwrap().contains("left the job"));
    }

    #[test]
    fn silent_workers_are_dropped() {
        let cfg = SchedulerConfig {
            lease_ms: 10_000,
            worker_timeout_ms: 100,
            ..SchedulerConfig::default()
        };
        let mut s = Scheduler::new(&spec(&[0], None), cfg);
        s.join(0, 0);
        s.join(1, 0);
        s.add_input(input(0));
        s.close_input();
        let _ = take(&mut s, 0, 0).unwrap();
        s.heartbeat(1, &[], 150);
        assert!(s.tick(150));
        assert!(!s.is_alive(0));
        assert!(take(&mut s, 1, 151).is_some());
    }

    #[test]
    fn failures_retry_elsewhere_then_fail_the_job() {
        let mut s = Scheduler::new(&spec(&[1], None), SchedulerConfig::default());
        s.join(0, 0);
        s.join(1, 0);
        s.add_input(input(0));
        s.close_input();
        let a = take(&mut s, 0, 1).unwrap();
        s.fail(0, &a.attempt, "exit 1", "Traceback: boom").unwrap();
        assert!(
            take(&mut s, 0, 2).is_none(),
            "worker 0 failed it; worker 1 should get it"
        );
        let b = take(&mut s, 1, 3).unwrap();
        s.fail(1, &b.attempt, "exit 1", "Traceback: boom").unwrap();
        match s.state() {
            JobState::Failed {
                task, stderr_tail, ..
            } => {
                assert_eq!(task, "s0-m-00000");
                assert!(stderr_tail.contains("boom"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.assign(1, 4), Assignment::Done));
    }

    #[test]
    fn stragglers_get_a_backup_and_the_first_result_wins() {
        let mut s = Scheduler::new(
            &spec(&[0], None),
            SchedulerConfig {
                speculate_after_ms: 50,
                ..SchedulerConfig::default()
            },
        );
        s.join(0, 0);
        s.join(1, 0);
        s.add_input(input(0));
        s.add_input(input(1));
        s.close_input();
        let slow = take(&mut s, 0, 0).unwrap();
        let fast = take(&mut s, 1, 0).unwrap();
        s.succeed(1, &fast.attempt, &written(&fast), &Counters::default(), 10)
            .unwrap();
        assert!(take(&mut s, 1, 20).is_none(), "too early to speculate");
        let backup = take(&mut s, 1, 100).unwrap();
        assert!(backup.speculative);
        assert_eq!(backup.attempt.task, slow.attempt.task);
        s.succeed(
            1,
            &backup.attempt,
            &written(&backup),
            &Counters::default(),
            10,
        )
        .unwrap();
        assert_eq!(*s.state(), JobState::Succeeded);
        assert_eq!(
            s.heartbeat(0, &[slow.attempt], 101),
            vec![slow.attempt],
            "the slow copy is cancelled"
        );
    }

    #[test]
    fn reports_must_match_the_assigned_buckets() {
        let mut s = Scheduler::new(&spec(&[2], None), SchedulerConfig::default());
        s.join(0, 0);
        s.add_input(input(0));
        let l = take(&mut s, 0, 1).unwrap();
        let mut w = written(&l);
        w.pop();
        assert!(matches!(
            s.succeed(0, &l.attempt, &w, &Counters::default(), 1),
            Err(Rejected::BadOutputs(..))
        ));
        let mut w = written(&l);
        w[0].bucket = BucketId::parse("in-00000").unwrap();
        assert!(matches!(
            s.succeed(0, &l.attempt, &w, &Counters::default(), 1),
            Err(Rejected::BadOutputs(..))
        ));
    }
}
