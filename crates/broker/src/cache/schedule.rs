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

    proptest! {
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
