//! Per-user and global rate limits, each with a per-minute and a per-day budget (GCRA, governor).
//! Idle per-user state is evicted periodically so memory stays bounded by active users.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use crate::config::RateLimitConfig;

type Keyed<C> =
    RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    UserMinute,
    UserDay,
    GlobalMinute,
    GlobalDay,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserMinute => "user_per_minute",
            Self::UserDay => "user_per_day",
            Self::GlobalMinute => "global_per_minute",
            Self::GlobalDay => "global_per_day",
        }
    }
}

/// A refusal: which limit, and how long until a request would pass it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: Limit,
    pub retry_after: Duration,
}

/// The limits. Generic over the clock so tests can drive time; production uses governor's default.
#[derive(Debug)]
pub struct RateLimits<C: Clock = DefaultClock> {
    user_minute: Keyed<C>,
    user_day: Keyed<C>,
    global_minute: Direct<C>,
    global_day: Direct<C>,
    clock: C,
}

/// `n` requests per `period`, allowed in a burst of up to `n`.
fn quota(n: u32, period: Duration) -> Quota {
    let n = NonZeroU32::new(n.max(1)).expect("max(1) is non-zero");
    // governor wants the replenish interval of one cell.
    Quota::with_period(period / n.get())
        .expect("period is non-zero")
        .allow_burst(n)
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

impl RateLimits {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self::with_clock(c, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    pub fn with_clock(c: &RateLimitConfig, clock: C) -> Self {
        Self {
            user_minute: RateLimiter::dashmap_with_clock(
                quota(c.per_user_per_minute, MINUTE),
                clock.clone(),
            ),
            user_day: RateLimiter::dashmap_with_clock(
                quota(c.per_user_per_day, DAY),
                clock.clone(),
            ),
            global_minute: RateLimiter::direct_with_clock(
                quota(c.global_per_minute, MINUTE),
                clock.clone(),
            ),
            global_day: RateLimiter::direct_with_clock(quota(c.global_per_day, DAY), clock.clone()),
            clock,
        }
    }

    /// Checks the user's budgets, then the global ones. Per-user limits go first so one noisy user
    /// is refused before they can drain the global budget.
    pub fn check(&self, user: &Uuid) -> Result<(), Limited> {
        let now = self.clock.now();
        let refuse = |limit: Limit, nu: governor::NotUntil<_>| Limited {
            limit,
            retry_after: nu.wait_time_from(now),
        };
        self.user_minute
            .check_key(user)
            .map_err(|nu| refuse(Limit::UserMinute, nu))?;
        self.user_day
            .check_key(user)
            .map_err(|nu| refuse(Limit::UserDay, nu))?;
        self.global_minute
            .check()
            .map_err(|nu| refuse(Limit::GlobalMinute, nu))?;
        self.global_day
            .check()
            .map_err(|nu| refuse(Limit::GlobalDay, nu))?;
        Ok(())
    }

    /// Drops per-user state that has fully replenished; such users are indistinguishable from new.
    pub fn evict_idle(&self) {
        self.user_minute.retain_recent();
        self.user_day.retain_recent();
        self.user_minute.shrink_to_fit();
        self.user_day.shrink_to_fit();
    }

    /// Number of users with per-minute state held.
    pub fn tracked_users(&self) -> usize {
        self.user_minute.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_budget_is_separate_and_reports_retry_after() {
        let limits = RateLimits::new(&RateLimitConfig {
            per_user_per_minute: 2,
            per_user_per_day: 100,
            global_per_minute: 100,
            global_per_day: 100,
        });
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(limits.check(&a).is_ok());
        assert!(limits.check(&a).is_ok());
        let refused = limits.check(&a).unwrap_err();
        assert_eq!(refused.limit, Limit::UserMinute);
        assert!(
            refused.retry_after > Duration::from_secs(20)
                && refused.retry_after <= Duration::from_secs(30)
        );
        assert!(
            limits.check(&b).is_ok(),
            "another user has their own budget"
        );
    }

    #[test]
    fn global_budget_applies_across_users() {
        let limits = RateLimits::new(&RateLimitConfig {
            per_user_per_minute: 100,
            per_user_per_day: 100,
            global_per_minute: 3,
            global_per_day: 100,
        });
        for i in 0..3 {
            assert!(limits.check(&Uuid::from_u128(i)).is_ok());
        }
        assert_eq!(
            limits.check(&Uuid::from_u128(9)).unwrap_err().limit,
            Limit::GlobalMinute
        );
    }

    #[test]
    fn daily_budget_binds_after_minute_budget() {
        let limits = RateLimits::new(&RateLimitConfig {
            per_user_per_minute: 100,
            per_user_per_day: 2,
            global_per_minute: 100,
            global_per_day: 100,
        });
        let u = Uuid::from_u128(5);
        assert!(limits.check(&u).is_ok());
        assert!(limits.check(&u).is_ok());
        let refused = limits.check(&u).unwrap_err();
        assert_eq!(refused.limit, Limit::UserDay);
        assert!(refused.retry_after > Duration::from_secs(3600));
    }

    #[test]
    fn eviction_forgets_replenished_users_and_keeps_limited_ones() {
        use governor::clock::FakeRelativeClock;
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::with_clock(
            &RateLimitConfig {
                per_user_per_minute: 1,
                per_user_per_day: 1000,
                global_per_minute: 1000,
                global_per_day: 1000,
            },
            clock.clone(),
        );
        for i in 0..100 {
            assert!(limits.check(&Uuid::from_u128(i)).is_ok());
        }
        // governor forgets a key once its state is indistinguishable from a fresh one: two
        // emission intervals after its last use.
        clock.advance(Duration::from_secs(125));
        // One user comes back and is limited again; the other 99 have fully replenished.
        assert!(limits.check(&Uuid::from_u128(7)).is_ok());
        assert!(limits.check(&Uuid::from_u128(7)).is_err());
        limits.evict_idle();
        // The day budget (1000/day) replenishes slowly, so only minute state can be forgotten
        // this soon; its map shrinks to the one user still limited.
        assert_eq!(limits.tracked_users(), 1);
        assert!(
            limits.check(&Uuid::from_u128(7)).is_err(),
            "a limited user is not forgotten"
        );
    }

    #[test]
    fn eviction_keeps_state_of_users_still_limited() {
        let limits = RateLimits::new(&RateLimitConfig {
            per_user_per_minute: 1,
            per_user_per_day: 100,
            global_per_minute: 1000,
            global_per_day: 1000,
        });
        for i in 0..50 {
            let _ = limits.check(&Uuid::from_u128(i));
        }
        assert_eq!(limits.tracked_users(), 50);
        limits.evict_idle();
        // All 50 used their single cell just now, so none has replenished: none may be forgotten,
        // or they would get a fresh budget.
        assert_eq!(limits.tracked_users(), 50);
        assert!(limits.check(&Uuid::from_u128(3)).is_err());
    }
}
