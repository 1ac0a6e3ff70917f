//! The shuffle: map output cut into partitions and sorted (spilling to disk
//! beyond the sort buffer), and sorted runs merged back for reducers.
//!
//! Lines are compared as bytes, whole (DESIGN.md: key then value), so two
//! honest workers running a deterministic program produce identical output.

pub mod collector;
pub mod merge;

/// Strips one trailing newline (and a carriage return before it).
pub fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
