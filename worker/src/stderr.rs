//! What job code writes on stderr: Streaming's `reporter:` lines become
//! counters and status; the last lines are kept for the failure report.

use std::collections::VecDeque;
use tokio::io::{AsyncRead, AsyncReadExt};
use tormr_core::counters::{Counters, ReporterLine, parse_reporter_line};

/// Longest stderr line kept; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;
/// Bytes of stderr tail kept for the failure report.
const TAIL_BYTES: usize = 8192;

#[derive(Debug, Clone, Default)]
pub struct StderrReport {
    pub counters: Counters,
    pub status: Option<String>,
    /// The last lines that were not reporter lines.
    pub tail: String,
}

#[derive(Default)]
struct Collector {
    counters: Counters,
    status: Option<String>,
    tail: VecDeque<String>,
    tail_bytes: usize,
}

impl Collector {
    fn line(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches('\r');
        match parse_reporter_line(text) {
            ReporterLine::Counter {
                group,
                name,
                amount,
            } => {
                // Bound what a job can make us keep.
                if self.counters.0.len() < 64 || self.counters.0.contains_key(&group) {
                    self.counters.add(&group, &name, amount);
                }
            }
            ReporterLine::Status(s) => self.status = Some(s.chars().take(256).collect()),
            ReporterLine::Other => {
                self.tail_bytes += text.len() + 1;
                self.tail.push_back(text.to_owned());
                while self.tail_bytes > TAIL_BYTES && self.tail.len() > 1 {
                    if let Some(old) = self.tail.pop_front() {
                        self.tail_bytes -= old.len() + 1;
                    }
                }
            }
        }
    }

    fn report(self) -> StderrReport {
        StderrReport {
            counters: self.counters,
            status: self.status,
            tail: Vec::from(self.tail).join("\n"),
        }
    }
}

/// Reads stderr to its end.
pub async fn watch<R: AsyncRead + Unpin>(mut stderr: R) -> StderrReport {
    let mut c = Collector::default();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &chunk[..n];
        while let Some(i) = memchr::memchr(b'\n', rest) {
            if line.len() < MAX_LINE {
                line.extend_from_slice(&rest[..i.min(MAX_LINE - line.len())]);
            }
            c.line(&line);
            line.clear();
            rest = &rest[i + 1..];
        }
        if line.len() < MAX_LINE {
            line.extend_from_slice(&rest[..rest.len().min(MAX_LINE - line.len())]);
        }
    }
    if !line.is_empty() {
        c.line(&line);
    }
    c.report()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_status_and_tail() {
        let mut input = b"reporter:counter:Words,seen,3\nreporter:status:halfway\nwarning: x\nreporter:counter:Words,seen,2\n".to_vec();
        input.extend(vec![b'z'; 20_000]);
        input.extend(b"\nTraceback: boom");
        let r = watch(&input[..]).await;
        assert_eq!(r.counters.get("Words", "seen"), 5);
        assert_eq!(r.status.as_deref(), Some("halfway"));
        assert!(r.tail.ends_with("Traceback: boom"));
        assert!(r.tail.len() <= TAIL_BYTES);
    }
}
