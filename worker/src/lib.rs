//! tormr-worker is the volunteer's daemon ("Bob", "Carl").
//!
//! A worker is only ever a client: it registers its pseudonym with a bulletin
//! board, long-polls for a ticket, joins the job master named in the ticket,
//! and then leases tasks, streams their sealed inputs from the data layer,
//! runs the job's code over them through an [`executor::Executor`], partitions
//! and sorts map output (spilling beyond a bounded buffer), seals and uploads
//! the results and reports their digests. Nothing of a job stays on the
//! machine after it ends.
//!
//! # Layout
//!
//! - [`volunteer`]: register, wait for a ticket, join, repeat.
//! - [`session`]: one joined job: prefetching fetcher, runners, heartbeat.
//! - [`task`]: one attempt: inputs → job code → shuffle → sealed outputs.
//! - [`shuffle`]: partitioning, the sort buffer and spills, k-way merges.
//! - [`datum`]: one datum of a Pachyderm pipeline, as a map task.
//! - [`run`]: job code as a stdin/stdout filter with a watchdog.
//! - [`executor`]: how job code is run ([`executor::process`], and
//!   [`executor::docker`], the container sandbox).
//! - [`canonical`]: the order-free digest of an output that verification
//!   compares between copies of a task.
//! - [`stderr`]: counters and the failure tail from job code's stderr.
//! - [`files`]: the job's files, fetched and linked into each attempt.
//! - [`images`]: job images exported by the owner, fetched in checked chunks,
//!   cached by image id.
//! - [`sandbox`]: the Docker engine, the volunteer's limits, the image cache.
//! - [`config`]: what the volunteer offers.
//! - [`faults`]: deliberate misbehaviour for fault-injection tests.

pub mod canonical;
pub mod config;
pub mod datum;
pub mod executor;
pub mod faults;
pub mod files;
pub mod images;
pub mod run;
pub mod sandbox;
pub mod session;
pub mod shuffle;
pub mod standing;
pub mod stderr;
pub mod task;
pub mod volunteer;

pub use config::WorkerConfig;
pub use volunteer::{Volunteer, WorkerError};
