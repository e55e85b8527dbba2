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
    /// How long IMS takes to answer.
    latency: Mutex<Duration>,
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
            latency: Mutex::new(Duration::from_millis(50)),
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
            let latency = *self.latency.lock();
            tokio::time::sleep(latency).await;
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
        // Backoff from 1 s to 60 s (4 s without a token), callers wait at most 2 s.
        RefreshConfig::default(),
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

    // Ten minutes of outage with nothing to serve: one attempt every 2 to 4 s (the backoff cap
    // without a token), so recovery is quick, and not more often, so IMS is not hammered.
    let before = f.calls();
    sleep_secs(600.0).await;
    let attempts = f.calls() - before;
    assert!(
        (150..=310).contains(&attempts),
        "{attempts} attempts in 10 minutes without a token"
    );

    // Recovery without a caller's help.
    *f.fail_forever.lock() = None;
    sleep_secs(4.1).await;
    assert!(h.peek().is_some(), "recovered in the background");
}

#[tokio::test(start_paused = true)]
async fn after_a_long_outage_callers_are_served_within_seconds_of_recovery() {
    let f = Scripted::new(Duration::from_secs(300));
    let c = cache(&f);
    let h = c.pinned(key());
    h.get().await.unwrap();
    *f.fail_forever.lock() = Some(unavailable(None));
    // Long enough for the token to lapse and the backoff to reach its cap.
    sleep_secs(900.0).await;
    assert!(h.get().await.is_err());
    // IMS recovers just after a failed attempt: the worst moment, a whole backoff step away.
    let n = f.calls();
    while f.calls() == n {
        sleep_secs(0.01).await;
    }
    sleep_secs(0.06).await;
    assert!(h.get().await.is_err(), "the attempt failed");
    *f.fail_forever.lock() = None;
    let recovered = Instant::now();
    // A caller polling every 100 ms.
    while h.get().await.is_err() {
        sleep_secs(0.1).await;
    }
    let took = recovered.elapsed();
    eprintln!("first caller served {took:?} after IMS recovered");
    assert!(
        took <= Duration::from_millis(4_200),
        "callers refused for {took:?} after IMS recovered"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_ims_bounds_the_callers_wait_and_the_fetch_carries_on() {
    let f = Scripted::new(Duration::from_secs(300));
    *f.latency.lock() = Duration::from_secs(8);
    let c = cache(&f);
    let started = Instant::now();
    // A one-shot lookup (`imsgate token`) waits for the whole fetch instead.
    let patient = {
        let c = c.clone();
        tokio::spawn(async move { (c.get_waiting(key()).await, Instant::now()) })
    };
    let err = c.get(key()).await.unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "waited the bound"
    );
    assert_eq!(err.retry_after, Duration::from_secs(1));
    assert_eq!(f.calls(), 1);

    // Callers meanwhile join the one flight: they too give up after the bound, and IMS sees no
    // second request.
    sleep_secs(1.0).await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                (c.get(key()).await.is_err(), t.elapsed())
            })
        })
        .collect();
    for t in tasks {
        let (refused, waited) = t.await.unwrap();
        assert!(refused);
        assert_eq!(waited, Duration::from_secs(2));
    }
    assert_eq!(f.calls(), 1);

    // A caller arriving shortly before the answer gets the token from that same flight.
    sleep_secs(2.5).await;
    let t = c
        .get(key())
        .await
        .expect("the flight landed within the bound");
    assert_eq!(t.token.secret.expose(), "token-1");
    assert!(started.elapsed() < Duration::from_secs(9));
    assert_eq!(f.calls(), 1);
    let (patient, done) = patient.await.unwrap();
    assert_eq!(patient.unwrap().token.secret.expose(), "token-1");
    assert_eq!(done - started, Duration::from_secs(8));
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

#[tokio::test(start_paused = true)]
async fn force_refresh_is_one_flight_and_debounced_and_recorded_in_health() {
    let f = Scripted::new(Duration::from_secs(3600));
    let c = cache(&f);
    let first = c.get(key()).await.unwrap();
    assert_eq!(f.calls(), 1);
    let h = c.health();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].record.successes, 1);
    assert!(h[0].servable && h[0].record.last_failure.is_none());
    // Ten presses at once: one fetch, and every press gets its token.
    let presses: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.force_refresh(key()).await })
        })
        .collect();
    for p in presses {
        let t = p.await.unwrap().unwrap();
        assert!(matches!(t, Forced::Fetched(_)));
        let t = t.token().clone();
        assert_ne!(t.token.secret.expose(), first.token.secret.expose());
    }
    assert_eq!(f.calls(), 2);
    // Pressed again at once: the same token, no fetch. After the debounce: a fetch.
    assert!(matches!(
        c.force_refresh(key()).await.unwrap(),
        Forced::Recent(_)
    ));
    assert_eq!(f.calls(), 2);
    tokio::time::advance(FORCE_REFRESH_DEBOUNCE).await;
    // A forced refresh ignores the failure backoff but records the failure.
    f.fail.lock().push_back(ImsError {
        error: Some("server_busy".into()),
        debug_id: Some("dbg-123".into()),
        status: Some(503),
        ..unavailable(None)
    });
    assert!(c.force_refresh(key()).await.is_err());
    assert_eq!(f.calls(), 3);
    let h = &c.health()[0];
    let fail = h.record.last_failure.as_ref().unwrap();
    assert_eq!(fail.code, "server_busy");
    assert_eq!(fail.debug_id.as_deref(), Some("dbg-123"));
    assert_eq!(fail.status, Some(503));
    assert_eq!((h.record.successes, h.record.failures), (2, 1));
    // The token held is still served.
    assert!(h.servable);
    assert!(h.token_expires_at_ms.is_some());
}
