//! Whether the job a worker serves still stands, asked of the bulletin when
//! the job master stops answering.
//!
//! A job master that finished goes away; the "job done" answer that should
//! have sent its workers back to the board can be lost on the way (seen over
//! Tor in CI: one worker then retried a vanished onion service for five
//! minutes and missed the next job). The owner withdraws the job's cluster
//! request from the bulletin when the job ends, so a withdrawn (or forgotten)
//! request tells the worker the job is over, while a standing one means the
//! job master is only unreachable for now (a crash it may resume from).
//!
//! The board forgets a request an hour after it was matched or withdrawn, so
//! an unknown request says nothing either way; and a withdrawal is believed
//! only when two asks [`ASK_EVERY`] apart both see it while the job master
//! stays silent, so a worker does not walk away from a job master that is
//! only slow to come back.

use std::time::Duration;
use tormr_bulletin::BulletinClient;
use tormr_core::ids::RequestId;
use tormr_core::wire::bulletin::RequestState;

/// How long the job master must be unreachable before the bulletin is asked.
pub const ASK_AFTER: Duration = Duration::from_secs(15);

/// How often the bulletin is asked again while the job master stays away.
pub const ASK_EVERY: Duration = Duration::from_secs(30);

/// The bulletin's view of one job, through the request that matched the worker.
#[derive(Clone)]
pub struct JobStanding {
    pub bulletin: BulletinClient,
    pub request: RequestId,
}

impl JobStanding {
    /// Whether the bulletin says the owner withdrew the request. Anything
    /// else — still posted, forgotten, or the bulletin unreachable — leaves
    /// the job master's silence unexplained.
    pub async fn withdrawn(&self) -> bool {
        match self.bulletin.watch(&self.request, 0, Duration::ZERO).await {
            Ok(state) => state == RequestState::Withdrawn,
            Err(e) => {
                tracing::debug!("could not ask the bulletin about the job: {e}");
                false
            }
        }
    }
}

/// Asks the bulletin while the job master is unreachable, and decides when
/// the job is over.
pub struct StandingWatch {
    standing: Option<JobStanding>,
    asked: Option<std::time::Instant>,
    withdrawn_seen: bool,
}

impl StandingWatch {
    pub fn new(standing: Option<JobStanding>) -> Self {
        StandingWatch {
            standing,
            asked: None,
            withdrawn_seen: false,
        }
    }

    /// Called after each failed call to the job master, unreachable since
    /// `failing_since`: true once the job is known to be over.
    pub async fn job_is_over(&mut self, failing_since: std::time::Instant) -> bool {
        let Some(standing) = &self.standing else {
            return false;
        };
        if failing_since.elapsed() < ASK_AFTER
            || self.asked.is_some_and(|t| t.elapsed() < ASK_EVERY)
        {
            return false;
        }
        self.asked = Some(std::time::Instant::now());
        let withdrawn = standing.withdrawn().await;
        let over = withdrawn && self.withdrawn_seen;
        self.withdrawn_seen = withdrawn;
        over
    }

    /// The job master answered: start over.
    pub fn reset(&mut self) {
        self.asked = None;
        self.withdrawn_seen = false;
    }
}
