//! What a volunteer offers and how it behaves.

use std::path::PathBuf;
use std::time::Duration;
use tormr_core::identity::PublicKey;

/// Parallel lanes for bulk transfers over Tor, each its own circuit. One
/// onion stream is window-bound (~2.5 MiB/s on the testnet); measured with
/// `bench/tor.sh`, 4 circuits carried 8.6 MiB/s down and 8 carried 11.9.
pub const DATA_LANES: usize = 8;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Identity key, job files and scratch space live here.
    pub state_dir: PathBuf,
    /// Tasks run at once (the cores offered).
    pub slots: u32,
    pub memory_mb: u64,
    /// The most sort buffer a task may use, whatever the job asks.
    pub sort_buffer_cap: u64,
    /// The owner key this worker serves as a fully trusted worker.
    pub trusted_by: Option<PublicKey>,
    /// Leave after one job instead of returning to the board.
    pub once: bool,
    /// How long each long-poll waits.
    pub poll_wait: Duration,
    /// Largest job file accepted.
    pub max_file_bytes: u64,
    /// Parallel lanes (circuits, over Tor) for bucket transfers.
    pub data_lanes: usize,
    /// Fault injection for tests: lie about answers. Never set in production.
    pub misbehaviour: Option<crate::faults::Misbehaviour>,
}

impl WorkerConfig {
    pub fn new(state_dir: PathBuf) -> Self {
        WorkerConfig {
            state_dir,
            slots: 1,
            memory_mb: 1024,
            sort_buffer_cap: 256 << 20,
            trusted_by: None,
            once: false,
            poll_wait: Duration::from_secs(25),
            max_file_bytes: 1 << 30,
            data_lanes: DATA_LANES,
            misbehaviour: None,
        }
    }
}
