//! Operator console sign-in: the internal API key checked in constant time behind a throttle for
//! wrong passwords (per client IP and global), and short in-memory sessions, each with its own
//! CSRF token.
//!
//! Sessions live in memory only: a restart signs operators out, which is the safe direction.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use imsgate_ims::SecretString;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::consent::{constant_time_eq, hash_id, is_random_id, random_id};

/// How long a console session lasts, whatever its use.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at once; the oldest is signed out to make room.
const MAX_SESSIONS: usize = 64;
/// Client addresses whose failures are remembered; beyond this the fullest buckets are dropped.
const MAX_TRACKED_CLIENTS: usize = 4096;

/// Wrong passwords a client may try in a burst, then one more per `PER_CLIENT_REFILL`.
pub const PER_CLIENT_BURST: f64 = 5.0;
pub const PER_CLIENT_REFILL: Duration = Duration::from_secs(30);
/// Wrong passwords from everyone together, then one more per `GLOBAL_REFILL`.
pub const GLOBAL_BURST: f64 = 30.0;
pub const GLOBAL_REFILL: Duration = Duration::from_secs(5);

/// A signed-in session, as handlers see it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    pub expires_at: Instant,
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInError {
    WrongPassword,
    /// Too many wrong passwords: from this client, or from everyone.
    Throttled {
        retry_after: Duration,
        global: bool,
    },
}

/// A token bucket that wrong passwords drain.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, every: Duration, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / every.as_secs_f64();
        self.tokens = (self.tokens + gained).min(burst);
        self.at = now;
    }

    /// How long until one attempt is allowed; `None` if one is allowed now.
    fn wait(&self, every: Duration) -> Option<Duration> {
        (self.tokens < 1.0).then(|| every.mul_f64(1.0 - self.tokens))
    }
}

#[derive(Debug, Default)]
struct Throttle {
    clients: HashMap<IpAddr, Bucket>,
    global: Option<Bucket>,
}

/// The console's sign-in and sessions.
#[derive(Debug)]
pub struct AdminAuth {
    key: SecretString,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    throttle: Mutex<Throttle>,
}

impl AdminAuth {
    pub fn new(key: SecretString) -> Self {
        Self {
            key,
            sessions: Mutex::default(),
            throttle: Mutex::default(),
        }
    }

    /// Checks the password; on success returns a new session id and its session. A client that
    /// spent its wrong-password budget is refused before the password is even compared, so a
    /// throttled guesser learns nothing, even from a right guess.
    pub fn sign_in(
        &self,
        client: Option<IpAddr>,
        password: &str,
    ) -> Result<(String, Session), SignInError> {
        let now = Instant::now();
        // Clients without an address (in-process tests) share one bucket.
        let ip = bucket_of(client.unwrap_or(IpAddr::from([0u8, 0, 0, 0])));
        {
            // Check and charge one attempt in one critical section, so concurrent guesses cannot
            // all pass the check before any is counted; a right password gets its charge back.
            let mut t = self.throttle.lock();
            let global = t
                .global
                .get_or_insert_with(|| Bucket::full(GLOBAL_BURST, now));
            global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
            if let Some(retry_after) = global.wait(GLOBAL_REFILL) {
                return Err(SignInError::Throttled {
                    retry_after,
                    global: true,
                });
            }
            if let Some(b) = t.clients.get_mut(&ip) {
                b.refill(PER_CLIENT_BURST, PER_CLIENT_REFILL, now);
                if let Some(retry_after) = b.wait(PER_CLIENT_REFILL) {
                    return Err(SignInError::Throttled {
                        retry_after,
                        global: false,
                    });
                }
            }
            if t.clients.len() >= MAX_TRACKED_CLIENTS && !t.clients.contains_key(&ip) {
                // Forget the clients closest to a full budget: they matter least.
                let mut fullest: Vec<(IpAddr, f64)> =
                    t.clients.iter().map(|(k, b)| (*k, b.tokens)).collect();
                fullest.sort_by(|a, b| b.1.total_cmp(&a.1));
                for (k, _) in fullest.into_iter().take(MAX_TRACKED_CLIENTS / 4) {
                    t.clients.remove(&k);
                }
            }
            if let Some(g) = t.global.as_mut() {
                g.tokens -= 1.0;
            }
            t.clients
                .entry(ip)
                .or_insert_with(|| Bucket::full(PER_CLIENT_BURST, now))
                .tokens -= 1.0;
        }
        if !self.key.ct_eq_str(password) {
            return Err(SignInError::WrongPassword);
        }
        {
            let mut t = self.throttle.lock();
            if let Some(g) = t.global.as_mut() {
                g.tokens = (g.tokens + 1.0).min(GLOBAL_BURST);
            }
            if let Some(b) = t.clients.get_mut(&ip) {
                b.tokens = (b.tokens + 1.0).min(PER_CLIENT_BURST);
            }
        }
        let id = random_id();
        let session = Session {
            csrf: random_id(),
            expires_at: now + SESSION_LIFETIME,
        };
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.expires_at > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        // Stored by digest, so the map never holds a usable session id.
        sessions.insert(hash_id(&id), session.clone());
        Ok((id, session))
    }

    /// The live session for a cookie value.
    pub fn session(&self, id: &str) -> Option<Session> {
        if !is_random_id(id) {
            return None;
        }
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        let key = hash_id(id);
        match sessions.get(&key) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Whether `presented` is the session's CSRF token (constant time).
    pub fn csrf_ok(session: &Session, presented: &str) -> bool {
        constant_time_eq(&session.csrf, presented)
    }

    pub fn sign_out(&self, id: &str) {
        if is_random_id(id) {
            self.sessions.lock().remove(&hash_id(id));
        }
    }
}

/// The budget a client address spends: an IPv4 address on its own, an IPv6 address by its /64,
/// since one IPv6 client usually holds a whole /64 and could otherwise rotate through it to get a
/// fresh budget for every guess.
fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "console-key-0123456789abcdef0123456789";

    #[tokio::test(start_paused = true)]
    async fn wrong_passwords_are_throttled_per_client_then_recover() {
        let auth = AdminAuth::new(SecretString::new(KEY));
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..PER_CLIENT_BURST as usize {
            assert_eq!(
                auth.sign_in(a, "wrong").unwrap_err(),
                SignInError::WrongPassword
            );
        }
        // Even the right password is refused while throttled.
        match auth.sign_in(a, KEY) {
            Err(SignInError::Throttled {
                retry_after,
                global: false,
            }) => assert!(retry_after <= PER_CLIENT_REFILL && !retry_after.is_zero()),
            other => panic!("{other:?}"),
        }
        // Another client is unaffected.
        assert!(auth.sign_in(b, KEY).is_ok());
        tokio::time::advance(PER_CLIENT_REFILL).await;
        assert!(auth.sign_in(a, KEY).is_ok());
    }

    /// An IPv6 client spends one budget for its whole /64, so rotating addresses inside it does
    /// not buy more guesses; another /64 has its own.
    #[tokio::test(start_paused = true)]
    async fn ipv6_addresses_of_one_64_share_a_budget() {
        let auth = AdminAuth::new(SecretString::new(KEY));
        let in_net = |i: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]));
        for i in 0..PER_CLIENT_BURST as u16 {
            assert_eq!(
                auth.sign_in(in_net(i + 1), "wrong").unwrap_err(),
                SignInError::WrongPassword
            );
        }
        assert!(matches!(
            auth.sign_in(in_net(999), KEY),
            Err(SignInError::Throttled { global: false, .. })
        ));
        let other_net = Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]));
        assert!(auth.sign_in(other_net, KEY).is_ok());
        // An IPv4-mapped address counts as the IPv4 address.
        assert_eq!(
            bucket_of("::ffff:192.0.2.7".parse().unwrap()),
            IpAddr::from([192, 0, 2, 7])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_budget_stops_guessing_from_many_addresses() {
        let auth = AdminAuth::new(SecretString::new(KEY));
        for i in 0..GLOBAL_BURST as u32 {
            let ip = Some(IpAddr::from(i.to_be_bytes()));
            assert_eq!(
                auth.sign_in(ip, "wrong").unwrap_err(),
                SignInError::WrongPassword
            );
        }
        assert!(matches!(
            auth.sign_in(Some(IpAddr::from([192, 0, 2, 9])), KEY),
            Err(SignInError::Throttled { global: true, .. })
        ));
        tokio::time::advance(GLOBAL_REFILL).await;
        assert!(
            auth.sign_in(Some(IpAddr::from([192, 0, 2, 9])), KEY)
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn right_passwords_do_not_spend_the_budget() {
        let auth = AdminAuth::new(SecretString::new(KEY));
        let a = Some(IpAddr::from([10, 0, 0, 3]));
        for _ in 0..(GLOBAL_BURST as usize * 2) {
            assert!(auth.sign_in(a, KEY).is_ok());
        }
        for _ in 0..PER_CLIENT_BURST as usize {
            assert_eq!(
                auth.sign_in(a, "wrong").unwrap_err(),
                SignInError::WrongPassword
            );
        }
        assert!(matches!(
            auth.sign_in(a, KEY),
            Err(SignInError::Throttled { global: false, .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_and_sign_out() {
        let auth = AdminAuth::new(SecretString::new(KEY));
        let (id, s) = auth.sign_in(None, KEY).unwrap();
        assert!(auth.session(&id).is_some());
        assert!(AdminAuth::csrf_ok(&s, &s.csrf));
        assert!(!AdminAuth::csrf_ok(&s, &random_id()));
        assert!(!AdminAuth::csrf_ok(&s, ""));
        assert!(auth.session(&random_id()).is_none());
        assert!(auth.session("not an id").is_none());
        auth.sign_out(&id);
        assert!(auth.session(&id).is_none());
        let (id, _) = auth.sign_in(None, KEY).unwrap();
        tokio::time::advance(SESSION_LIFETIME).await;
        assert!(auth.session(&id).is_none());
    }
}
