//! What the bulletin's test binaries share: a volunteer's offer and a
//! cluster request.

use tormr_core::wire::bulletin::{Capabilities, ClusterRequest, ExecutorKind, Requirements};

pub fn caps() -> Capabilities {
    Capabilities {
        cores: 2,
        memory_mb: 2048,
        executors: vec![ExecutorKind::Process],
    }
}

pub fn request(workers: u32) -> ClusterRequest {
    ClusterRequest {
        job_address: "127.0.0.1:1".into(),
        workers,
        min_workers: workers,
        wait_secs: 60,
        requirements: Requirements::default(),
        issued_at: tormr_core::unix_now(),
        owner: None,
    }
}
