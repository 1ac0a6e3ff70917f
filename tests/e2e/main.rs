//! End-to-end tests: the real `tormr` binary running whole jobs in local mode,
//! checked against references computed another way. One test binary, shared
//! helpers in `util`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod docker;
mod errors;
mod faults;
mod mrjob;
mod owner_run;
mod pachyderm;
mod replicas;
mod resume;
mod util;
mod verification;
mod wordcount;
