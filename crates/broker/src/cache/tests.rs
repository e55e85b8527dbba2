//! The cache on virtual time (tokio's paused clock) with a scripted fetcher: when refreshes happen,
//! what callers see while IMS fails, and how often it is retried.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use imsgate_ims::{AccessToken, ImsErrorKind, SecretString};

use super::*;
use crate::clock::{Clock, TokioClock};

/// Answers with tokens of a fixed lifetime, or with scripted errors while `fail` holds any.
struct Scripted {
    clock: TokioClock,
    lifetime: Duration,
    calls: AtomicU32,
    fail: Mutex<VecDeque<ImsError>>,
    fail_forever: Mutex<Option<ImsError>>,
    panic_next: std::sync::atomic::AtomicBool,
}

impl Scripted {
    fn new(lifetime: Duration) -> Arc<Self> {
        Arc::new(Self {
            clock: TokioClock::new(),
            lifetime,
            calls: AtomicU32::new(0),
            fail: Mutex::default(),
            fail_forever: Mutex::default(),
            panic_next: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Fetcher for Scripted {
    fn fetch<'a>(
        &'a self,
        _key: &'a TokenKey,
    ) -> Pin<Box<dyn Future<Output = Result<AccessToken, ImsError>> + Send + 'a>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            // IMS takes a moment, so concurrent callers really overlap with the request.
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(
                !self.panic_next.swap(false, Ordering::SeqCst),
                "scripted fetcher panic"
            );
            if let Some(e) = self.fail.lock().pop_front() {
                return Err(e);
            }
            if let Some(e) = self.fail_forever.lock().clone() {
                return Err(e);
            }
            let now = self.clock.now();
            Ok(AccessToken {
                secret: SecretString::new(format!("token-{n}")),
                token_type: "bearer".into(),
                issued_at: now,
                expires_at: now + self.lifetime,
            })
        })
    }
}

fn key() -> TokenKey {
    TokenKey {
        credential: "c".into(),
        org_id: None,
        scopes: ScopeSet::new(["openid"]),
    }
}

fn cache(fetcher: &Arc<Scripted>) -> TokenCache {
    TokenCache::new(
        fetcher.clone(),
        Arc::new(fetcher.clock.clone()),
        RefreshConfig {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            ..RefreshConfig::default()
        },
        Arc::new(Metrics::new()),
    )
}

fn unavailable(retry_after: Option<Duration>) -> ImsError {
    ImsError {
        retry_after,
        status: Some(503),
        ..ImsError::new(ImsErrorKind::Unavailable)
    }
}

async fn sleep_secs(s: f64) {
    tokio::time::sleep(Duration::from_secs_f64(s)).await;
}

#[tokio::test(start_paused = true)]
async fn a_five_minute_token_refreshes_at_about_four_minutes() {
    let f = Scripted::new(Duration::from_secs(300));
    let c = cache(&f);
    let h = c.pinned(key());
    assert_eq!(h.get().await.unwrap().token.secret.expose(), "token-1");
    sleep_secs(233.0).await;
    assert_eq!(f.calls(), 1, "not before 4 minutes minus jitter");
    sleep_secs(8.0).await;
    assert_eq!(f.calls(), 2, "refreshed by 4 minutes");
    assert_eq!(h.get().await.unwrap().token.secret.expose(), "token-2");
}

#[tokio::test(start_paused = true)]
async fn a_day_token_is_refreshed_in_its_last_half_hour_not_hours_early() {
    let f = Scripted::new(Duration::from_secs(86_399));
    let c = cache(&f);
    let h = c.pinned(key());
    h.get().await.unwrap();
    sleep_secs(86_399.0 - 1800.0 - 181.0).await;
    assert_eq!(f.calls(), 1);
    sleep_secs(182.0).await;
    assert_eq!(f.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn during_an_outage_the_old_token_is_served_until_the_safety_margin_then_503() {
    let f = Scripted::new(Duration::from_secs(300));
    let c = cache(&f);
    let h = c.pinned(key());
    h.get().await.unwrap();
    *f.fail_forever.lock() = Some(unavailable(None));
    // From the refresh point (about 240 s) to 285 s (expiry minus 15 s) the old token is served.
    sleep_secs(284.0).await;
    assert_eq!(h.get().await.unwrap().token.secret.expose(), "token-1");
    let calls_before = f.calls();
    assert!(
        calls_before >= 3,
        "retried in the background ({calls_before})"
    );
    sleep_secs(2.0).await;
    let err = h.get().await.unwrap_err();
    assert_eq!(err.cause.status, Some(503));
    assert!(err.retry_after > Duration::ZERO && err.retry_after <= Duration::from_secs(60));
    // Many callers in the backoff window cause no upstream requests.
    let calls = f.calls();
    for _ in 0..100 {
        assert!(h.get().await.is_err());
    }
    assert_eq!(f.calls(), calls);

    // Ten minutes of outage: exponential backoff capped at 60 s means few attempts.
    sleep_secs(600.0).await;
    let attempts = f.calls() - 1;
    assert!(
        (8..=25).contains(&attempts),
        "{attempts} attempts in ~12 minutes of failure"
    );

    // Recovery without a caller's help.
    *f.fail_forever.lock() = None;
    sleep_secs(61.0).await;
    assert!(h.peek().is_some(), "recovered in the background");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let f = Scripted::new(Duration::from_secs(300));
    let c = cache(&f);
    f.fail
        .lock()
        .push_back(unavailable(Some(Duration::from_secs(120))));
    let h = c.pinned(key());
    let err = h.get().await.unwrap_err();
    assert!(err.retry_after >= Duration::from_secs(120));
    sleep_secs(119.0).await;
    assert_eq!(f.calls(), 1, "no retry before Retry-After");
    sleep_secs(2.0).await;
    assert_eq!(f.calls(), 2);
    assert!(h.get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn idle_keys_lapse_instead_of_being_minted_forever() {
    let f = Scripted::new(Duration::from_secs(300));
    let c = cache(&f);
    c.get(key()).await.unwrap();
    // Used once, then never again: at most one refresh inside the in-use window, then nothing.
    sleep_secs(3600.0).await;
    assert!(f.calls() <= 2, "{} fetches for an idle key", f.calls());
    let before = f.calls();
    // The next caller gets a fresh token (a cold fetch), and the key is live again.
    c.get(key()).await.unwrap();
    assert_eq!(f.calls(), before + 1);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_callers_share_one_fetch() {
    let f = Scripted::new(Duration::from_secs(300));
    let c = cache(&f);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.get(key())
                    .await
                    .map(|t| t.token.secret.expose().to_owned())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "token-1");
    }
    assert_eq!(f.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fetch_that_dies_does_not_wedge_the_key() {
    let f = Scripted::new(Duration::from_secs(300));
    f.panic_next.store(true, Ordering::SeqCst);
    let c = cache(&f);
    assert!(
        c.get(key()).await.is_err(),
        "the dead flight reports an error"
    );
    let t = c
        .get(key())
        .await
        .expect("the next caller starts a new flight");
    assert_eq!(t.token.secret.expose(), "token-2");
}
