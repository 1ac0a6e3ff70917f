//! K-way merge of sorted line streams.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, Write};

/// Merges sorted sources into one sorted stream of lines (without newlines).
pub struct Merger<R: BufRead> {
    sources: Vec<R>,
    /// The current line of each live source, smallest on top.
    heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    /// A buffer handed back by the caller, reused for the next read.
    spare: Vec<u8>,
}

fn read_line<R: BufRead>(source: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    if source.read_until(b'\n', buf)? == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(true)
}

impl<R: BufRead> Merger<R> {
    pub fn new(mut sources: Vec<R>) -> io::Result<Self> {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (i, s) in sources.iter_mut().enumerate() {
            let mut buf = Vec::new();
            if read_line(s, &mut buf)? {
                heap.push(Reverse((buf, i)));
            }
        }
        Ok(Merger {
            sources,
            heap,
            spare: Vec::new(),
        })
    }

    /// Calls `each` with every line in order.
    pub fn for_each(&mut self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        while let Some(Reverse((line, i))) = self.heap.pop() {
            each(&line)?;
            self.spare = line;
            let mut buf = std::mem::take(&mut self.spare);
            if read_line(&mut self.sources[i], &mut buf)? {
                self.heap.push(Reverse((buf, i)));
            }
        }
        Ok(())
    }

    /// The sources, once merged (to check what they read).
    pub fn into_sources(self) -> Vec<R> {
        self.sources
    }

    /// Writes every line, newline-terminated; returns the line count.
    pub fn write_to(&mut self, out: &mut dyn Write) -> io::Result<u64> {
        let mut n = 0;
        self.for_each(|line| {
            n += 1;
            out.write_all(line)?;
            out.write_all(b"\n")
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_sorted_runs_by_whole_line_bytes() {
        let a: &[u8] = b"a\t1\nb\t2\nd\n";
        let b: &[u8] = b"a\t0\nc\t9";
        let c: &[u8] = b"";
        let mut out = Vec::new();
        let n = Merger::new(vec![a, b, c])
            .unwrap()
            .write_to(&mut out)
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(out, b"a\t0\na\t1\nb\t2\nc\t9\nd\n");
    }
}
