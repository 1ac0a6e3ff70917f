//! Native word-count mapper for tormr (Hadoop Streaming contract).
//!
//! Counts the words of its whole input split in memory ("in-mapper
//! combining") and writes one `word<TAB>count` line per distinct word, so the
//! shuffle moves one line per word per bucket instead of one per occurrence.
//!
//! Run: tormr submit --cluster 'local[2]' -input corpus.txt -output out \
//!   -mapper wc-map -reducer wc-reduce -file target/release/examples/wc-map \
//!   -file target/release/examples/wc-reduce

#[path = "words.rs"]
mod words;

use std::io::{BufWriter, Write};

fn main() -> std::io::Result<()> {
    let mut counts = words::Counts::default();
    words::count_stream(std::io::stdin().lock(), &mut counts)?;
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    for (word, n) in &counts {
        out.write_all(word)?;
        writeln!(out, "\t{n}")?;
    }
    out.flush()
}
