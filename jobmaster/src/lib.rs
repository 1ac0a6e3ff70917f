//! tormr-jobmaster is the owner's side of a job ("J").
//!
//! It cuts the owner's input into line-aligned buckets, seals each with a
//! fresh key and uploads the ciphertext to the data layer; it keeps every
//! bucket key in its store (the key vault) and hands a key out only with a task
//! that needs it. Workers matched by the bulletin join with their tickets, lease
//! tasks, heartbeat and report; the scheduler re-queues what is lost, retries
//! what fails, backs up stragglers, has untrusted answers recomputed by other
//! workers (more often the less a pseudonym has earned), bans liars, and walks the job through map → shuffle →
//! reduce for each step. At the end the owner's outputs are fetched, opened and
//! laid out as Hadoop would.
//!
//! # Layout
//!
//! - [`scheduler`]: task states, leases, retries, speculation, verification
//!   copies and bans (pure, clock-injected).
//! - [`verify`]: comparing copies of a task, arbitration, replication draws.
//! - [`trust`]: the owner's trust book: each pseudonym's record across jobs.
//! - [`records`]: what is persisted (inputs and keys, finished tasks, tickets).
//! - [`master`]: [`JobMaster`], joining scheduler, records and sessions.
//! - [`service`]: the worker API and the owner's status API.
//! - [`status_page`]: the owner's HTML page and Prometheus metrics.
//! - [`input`]: finding, slicing, sealing and uploading input.
//! - [`output`]: fetching and opening the results.
//! - [`clock`]: injected time.

pub mod clock;
pub mod input;
pub mod master;
pub mod output;
pub mod records;
pub mod scheduler;
pub mod service;
pub mod status_page;
pub mod trust;
pub mod verify;

pub use master::{ImageArchive, JobMaster, JobMasterConfig, ResumeError, Resumed};
