//! Pure scheduling maths for refresh-ahead and retry backoff, property-tested below.
//!
//! `jitter` arguments are uniform samples in `[0, 1)` supplied by the caller, so these functions stay
//! deterministic and testable.

use std::time::Duration;

/// The longest a token is refreshed ahead of expiry: a 24-hour token is refreshed in its last half
/// hour, not hours early, because every extra token counts against Adobe's throttling.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30 * 60);

/// The longest a token is held back from callers before its real expiry, so a caller never
/// receives a token that dies in transit.
pub const MAX_SAFETY_MARGIN: Duration = Duration::from_secs(60);

/// How long before expiry to refresh: a fifth of the lifetime (a 5-minute token refreshes at about
/// 4 minutes), at most [`MAX_REFRESH_MARGIN`], widened by up to 10% jitter so replicas sharing a
/// credential do not refresh in lockstep.
pub fn refresh_margin(lifetime: Duration, jitter: f64) -> Duration {
    let base = (lifetime / 5).min(MAX_REFRESH_MARGIN);
    let extra = base.mul_f64(0.1 * jitter.clamp(0.0, 1.0));
    (base + extra).min(lifetime)
}

/// How long before expiry a cached token stops being served: a twentieth of the lifetime, at most
/// a minute. Always smaller than the refresh margin, so refresh starts while the token is served.
pub fn safety_margin(lifetime: Duration) -> Duration {
    (lifetime / 20).min(MAX_SAFETY_MARGIN)
}

/// The wait before retry number `attempt` (1-based): exponential from `initial`, capped at `max`,
/// with "equal jitter" (between half and all of the step), and never shorter than what the server
/// asked for in `Retry-After`.
pub fn backoff(
    attempt: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let step = initial.saturating_mul(1u32 << exp).min(max);
    let jittered = step / 2 + (step / 2).mul_f64(jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(ra) => jittered.max(ra),
        None => jittered,
    }
}

/// How a key whose fetch failed is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The first step of the exponential backoff.
    pub initial: Duration,
    /// The cap while the key still has a token to serve: nobody waits on the retry, so IMS is
    /// spared.
    pub max: Duration,
    /// The cap while callers are refused because no servable token exists: a recovering IMS must
    /// be noticed within seconds, not after a minute of backoff. One request per key per step is
    /// all this costs.
    pub max_without_token: Duration,
}

/// The wait from failed attempt number `attempt` (1-based) to the next one.
///
/// `served_for` is how much longer the key's current token is served (zero when there is none).
/// While the token outlives the relaxed backoff (capped at `max`), that backoff applies unchanged.
/// Otherwise callers are, or will soon be, refused: the next attempt comes no later than the moment
/// the token stops being served, and from then on the backoff is capped at `max_without_token`. Errors
/// that retrying cannot cure (`retryable` false: a refused credential) always take the relaxed
/// backoff. The server's `Retry-After` is honoured in every case.
pub fn retry_delay(
    attempt: u32,
    policy: RetryPolicy,
    retry_after: Option<Duration>,
    served_for: Duration,
    retryable: bool,
    jitter: f64,
) -> Duration {
    let relaxed = backoff(attempt, policy.initial, policy.max, retry_after, jitter);
    if !retryable {
        return relaxed;
    }
    let cap = policy.max_without_token.min(policy.max);
    let urgent = backoff(attempt, policy.initial, cap, retry_after, jitter);
    relaxed.min(served_for.max(urgent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples_from_the_issue() {
        let five_min = Duration::from_secs(300);
        assert_eq!(refresh_margin(five_min, 0.0), Duration::from_secs(60));
        assert_eq!(safety_margin(five_min), Duration::from_secs(15));
        let day = Duration::from_secs(86_399);
        assert_eq!(refresh_margin(day, 0.0), MAX_REFRESH_MARGIN);
        assert_eq!(safety_margin(day), MAX_SAFETY_MARGIN);
    }

    const DEFAULT_POLICY: RetryPolicy = RetryPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
        max_without_token: Duration::from_secs(4),
    };

    #[test]
    fn retry_delay_examples() {
        let s = Duration::from_secs;
        // (attempt, retry_after, served_for, retryable, jitter, expected)
        let table = [
            // A long outage with nothing to serve: a few seconds, not a minute.
            (20, None, s(0), true, 0.0, s(2)),
            (20, None, s(0), true, 1.0, s(4)),
            // The first failures grow from the initial step as before.
            (1, None, s(0), true, 0.0, Duration::from_millis(500)),
            (2, None, s(0), true, 1.0, s(2)),
            // The old token is served for ten more minutes: the relaxed backoff applies.
            (20, None, s(600), true, 0.0, s(30)),
            (20, None, s(600), true, 1.0, s(60)),
            // The token stops being served in 10 s, before the relaxed retry: retry then.
            (20, None, s(10), true, 0.0, s(10)),
            // ... but never sooner than the capped backoff when that is later.
            (20, None, Duration::from_millis(500), true, 1.0, s(4)),
            // IMS said when: honoured, whether or not callers are refused.
            (20, Some(s(120)), s(0), true, 0.0, s(120)),
            (1, Some(s(3)), s(600), true, 0.0, s(3)),
            // A refused credential does not heal by itself: the relaxed backoff, always.
            (20, None, s(0), false, 0.0, s(30)),
        ];
        for (attempt, ra, served, retryable, j, want) in table {
            let got = retry_delay(attempt, DEFAULT_POLICY, ra, served, retryable, j);
            assert_eq!(
                got, want,
                "attempt {attempt}, retry-after {ra:?}, served {served:?}, retryable {retryable}, jitter {j}"
            );
        }
    }

    proptest! {
        #[test]
        fn retry_delay_recovers_quickly_without_hammering(
            attempt in 1u32..200,
            initial_ms in 1u64..10_000,
            max_extra_ms in 0u64..600_000,
            without_token_ms in 1u64..60_000,
            served_ms in proptest::option::of(0u64..3_600_000),
            ra_s in proptest::option::of(0u64..3600),
            retryable in proptest::bool::ANY,
            j in 0.0f64..1.0,
        ) {
            let policy = RetryPolicy {
                initial: Duration::from_millis(initial_ms),
                max: Duration::from_millis(initial_ms + max_extra_ms),
                max_without_token: Duration::from_millis(without_token_ms),
            };
            let ra = ra_s.map(Duration::from_secs);
            let served = served_ms.map(Duration::from_millis).unwrap_or_default();
            let d = retry_delay(attempt, policy, ra, served, retryable, j);
            let relaxed = backoff(attempt, policy.initial, policy.max, ra, j);
            // Never later than the schedule that ignores callers.
            prop_assert!(d <= relaxed);
            // IMS is never asked sooner than it said.
            if let Some(r) = ra { prop_assert!(d >= r); }
            // Never hammered: at least half the smallest step between attempts.
            let floor = policy.initial.min(policy.max_without_token).min(policy.max) / 2;
            prop_assert!(d >= floor, "{d:?} below {floor:?}");
            if retryable {
                // With nothing to serve, the next attempt is a few seconds away at most.
                if served.is_zero() {
                    prop_assert!(d <= policy.max_without_token.max(ra.unwrap_or_default()));
                }
                // Callers are never refused for longer than the capped backoff, counted from
                // when the token stops being served.
                let urgent = backoff(attempt, policy.initial, policy.max_without_token.min(policy.max), ra, j);
                prop_assert!(d <= served.max(urgent));
            } else {
                prop_assert_eq!(d, relaxed);
            }
            // While the old token outlives the relaxed backoff, nothing changes.
            if served >= relaxed { prop_assert_eq!(d, relaxed); }
        }

        #[test]
        fn a_long_outage_without_a_token_costs_a_bounded_request_rate(
            j in proptest::collection::vec(0.0f64..1.0, 200),
        ) {
            // Ten minutes without a servable token under the default policy: attempts at least
            // every 4 s (quick recovery), at most one per 0.5 s in the worst case.
            let mut elapsed = Duration::ZERO;
            let mut attempts = 0u32;
            let mut longest = Duration::ZERO;
            while elapsed < Duration::from_secs(600) {
                attempts += 1;
                let d = retry_delay(attempts, DEFAULT_POLICY, None, Duration::ZERO, true, j[attempts as usize % j.len()]);
                longest = longest.max(d);
                elapsed += d;
            }
            prop_assert!(longest <= Duration::from_secs(4));
            prop_assert!((150..=310).contains(&attempts), "{attempts} attempts");
        }

        #[test]
        fn refresh_starts_while_the_token_is_still_served(lifetime_ms in 1_000u64..8*86_400_000, j in 0.0f64..1.0) {
            let lifetime = Duration::from_millis(lifetime_ms);
            let margin = refresh_margin(lifetime, j);
            let safety = safety_margin(lifetime);
            prop_assert!(margin > safety, "refresh margin {margin:?} must exceed safety {safety:?}");
            prop_assert!(margin <= lifetime);
            prop_assert!(margin <= MAX_REFRESH_MARGIN.mul_f64(1.1));
            // Refresh no earlier than 70% into the lifetime: long-lived tokens are not renewed early.
            prop_assert!(lifetime - margin >= lifetime.mul_f64(0.77));
        }

        #[test]
        fn backoff_is_bounded_and_honours_retry_after(
            attempt in 1u32..200,
            initial_ms in 1u64..10_000,
            extra_ms in 0u64..600_000,
            ra_s in proptest::option::of(0u64..3600),
            j in 0.0f64..1.0,
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial + Duration::from_millis(extra_ms);
            let ra = ra_s.map(Duration::from_secs);
            let d = backoff(attempt, initial, max, ra, j);
            prop_assert!(d <= max.max(ra.unwrap_or_default()));
            prop_assert!(d >= initial / 2 || ra.is_some_and(|r| d >= r));
            if let Some(r) = ra { prop_assert!(d >= r); }
        }

        #[test]
        fn backoff_grows_until_the_cap(attempt in 1u32..40, j in 0.0f64..1.0) {
            let initial = Duration::from_millis(100);
            let max = Duration::from_secs(60);
            let a = backoff(attempt, initial, max, None, j);
            let b = backoff(attempt + 1, initial, max, None, j);
            prop_assert!(b >= a, "attempt {attempt}: {a:?} then {b:?}");
            // The step doubles until the cap.
            let uncapped = initial.saturating_mul(1 << (attempt - 1).min(30));
            if uncapped * 2 <= max {
                prop_assert!(b >= a * 2 - Duration::from_nanos(2));
            }
        }
    }
}
