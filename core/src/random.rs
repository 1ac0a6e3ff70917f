//! Randomness from the operating system, for keys, nonces and identifiers.
//!
//! Every secret in tormr comes from here, so there is one place to audit.

/// Fills an array with OS randomness.
///
/// The OS generator failing is not something a caller can recover from or a
/// peer can provoke, so it aborts rather than hand out a predictable key.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if let Err(e) = getrandom::fill(&mut out) {
        // Continuing with zeros would silently produce guessable keys.
        panic!("the operating system's random number generator failed: {e}");
    }
    out
}

/// A random u64, for sampling decisions (not secrets).
pub fn u64() -> u64 {
    u64::from_le_bytes(bytes::<8>())
}
