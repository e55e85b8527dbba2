//! Memory per verified caller token is a small constant, however large the token: 50,000 distinct
//! 4 KB tokens in the verified-token cache grow the process by a few megabytes, not 200.
//!
//! Its own test binary with one test, so nothing else allocates while the resident size is read.

use imsgate_broker::caller_auth::Caller;
use imsgate_broker::verified::{ENTRY_BYTES, Verified, VerifiedCache};

/// Resident set size from `/proc/self/statm` (pages of 4 KiB on the platforms this runs on).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn memory_per_entry_is_bounded_with_4kb_tokens() {
    const N: usize = 50_000;
    // Key and value of one entry: a digest, a `Caller` and an expiry.
    const { assert!(ENTRY_BYTES <= 64) };
    let cache = VerifiedCache::default();
    let caller = Caller {
        token_id: uuid::Uuid::from_u128(1),
    };
    // One 4 KB buffer reused for every token: only what the cache keeps can grow the process.
    let mut token = "x".repeat(4096).into_bytes();
    let before = rss_bytes();
    for i in 0..N {
        token[..8].copy_from_slice(format!("{i:08}").as_bytes());
        let t = std::str::from_utf8(&token).unwrap();
        cache.insert(
            t,
            Verified {
                caller,
                exp: u64::MAX,
            },
            0,
        );
    }
    let grown = rss_bytes().saturating_sub(before);
    assert_eq!(cache.len(), N);
    let per_entry = grown / N as u64;
    eprintln!(
        "{N} entries of 4 KB tokens: RSS +{} KiB, {per_entry} bytes per entry",
        grown / 1024
    );
    assert!(
        per_entry <= 256,
        "{per_entry} bytes per cached token (RSS +{} KiB)",
        grown / 1024
    );
}
