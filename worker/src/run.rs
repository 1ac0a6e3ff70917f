//! Runs job code as a filter: one thread feeds its stdin, the caller drains
//! its stdout, stderr is watched, and a watchdog kills it at its time limit or
//! when the task is cancelled. Called from blocking threads, so the feeding and
//! draining code is plain `Read`/`Write`.

use crate::executor::{ExecError, ExecSpec, Executor, Exit};
use crate::stderr::{StderrReport, watch};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;
use tokio_util::sync::CancellationToken;

/// How a run ended.
pub struct Ran<T> {
    /// What draining stdout produced, if it finished.
    pub drained: io::Result<T>,
    /// Whether feeding stdin finished (a broken pipe is normal if the code
    /// chose not to read everything).
    pub fed: io::Result<()>,
    pub exit: Exit,
    pub stderr: StderrReport,
}

enum Ended {
    Exited(Exit),
    TimedOut,
    Cancelled,
}

/// Runs `spec` on `executor`, feeding stdin with `feed` and reading stdout with `drain`.
pub fn run_filter<T: Send>(
    rt: &Handle,
    executor: &dyn Executor,
    spec: &ExecSpec,
    cancel: &CancellationToken,
    feed: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send,
    drain: impl FnOnce(&mut dyn BufRead) -> io::Result<T> + Send,
) -> Result<Ran<T>, ExecError> {
    let started = rt.block_on(executor.start(spec))?;
    let (stdin, stdout, stderr, mut handle) = (
        started.stdin,
        started.stdout,
        started.stderr,
        started.handle,
    );
    let stderr_task = rt.spawn(watch(stderr));
    let kill = cancel.child_token();
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let timeout = spec.timeout;
    let watchdog_kill = kill.clone();
    rt.spawn(async move {
        let ended = tokio::select! {
            e = handle.wait() => Ended::Exited(e),
            _ = tokio::time::sleep(timeout) => Ended::TimedOut,
            _ = watchdog_kill.cancelled() => Ended::Cancelled,
        };
        let exit = match ended {
            Ended::Exited(e) => e,
            Ended::TimedOut => {
                handle.kill().await;
                let _ = handle.wait().await;
                Exit::TimedOut
            }
            Ended::Cancelled => {
                handle.kill().await;
                let _ = handle.wait().await;
                Exit::Cancelled
            }
        };
        handle.cleanup().await;
        let _ = exit_tx.send(exit);
    });

    let (drained, fed) = std::thread::scope(|scope| {
        let feeder = scope.spawn(|| {
            let mut writer = BufWriter::with_capacity(
                256 * 1024,
                SyncIoBridge::new_with_handle(stdin, rt.clone()),
            );
            let fed = feed(&mut writer);
            let flushed = writer.flush();
            // Close stdin so the code sees end of input.
            if let Ok(mut bridge) = writer.into_inner() {
                let _ = bridge.shutdown();
            }
            fed.and(flushed)
        });
        let mut reader =
            BufReader::with_capacity(1 << 20, SyncIoBridge::new_with_handle(stdout, rt.clone()));
        let drained = drain(&mut reader);
        if drained.is_err() {
            // Our side failed: stop the code rather than let it block on a full pipe.
            kill.cancel();
        } else {
            // Read to the end so the code never blocks writing output we ignore.
            let _ = io::copy(&mut reader, &mut io::sink());
        }
        let fed = feeder
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the input feeder panicked")));
        (drained, fed)
    });
    let exit = rt.block_on(exit_rx).unwrap_or(Exit::Code(-1));
    let stderr = rt.block_on(stderr_task).unwrap_or_default();
    let exit = if cancel.is_cancelled() {
        Exit::Cancelled
    } else {
        exit
    };
    Ok(Ran {
        drained,
        fed,
        exit,
        stderr,
    })
}
