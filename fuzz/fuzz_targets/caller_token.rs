//! Caller tokens, the bearer token every `/api/client-token` request carries: `bearer` on the
//! `Authorization` value, then the real `CallerVerifier::verify` (size cap, header decoding,
//! algorithm allow-list, HS256 signature, iss/aud/sub/exp, lifetime, the verified-token cache)
//! with a shared secret and a fixed clock, on a current-thread runtime built once.
//!
//! Input: the first byte chooses the mode. Bit 0 set: the rest is an `Authorization` header
//! value as a client would send it. Bit 0 clear: the rest is `header JSON 0xFF claims JSON`,
//! which the target signs HS256 with the configured secret, so the claim checks are reached.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use imsgate_broker::caller_auth::{self, CallerVerifier, MAX_CALLER_TOKEN_BYTES};
use imsgate_broker::clock::Clock;
use imsgate_broker::config::{CallerAuthConfig, CallerKeyConfig};
use imsgate_broker::secrets::SecretRef;

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "fuzz-shared-secret-0123456789abcdefghijkl";

#[derive(Debug)]
struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: CallerVerifier,
    hmac: aws_lc_rs::hmac::Key,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // The verifier loads its secret from a file readable only by its owner.
        let dir = std::env::temp_dir().join(format!("imsgate-fuzz-caller-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("caller.key");
        std::fs::write(&path, SECRET).expect("secret file");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let config = CallerAuthConfig {
            issuer: "https://partner.example".to_owned(),
            audience: "imsgate".to_owned(),
            key: CallerKeyConfig::Hs256 {
                secret: SecretRef::File(path),
            },
            leeway: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(3600),
        };
        let verifier = CallerVerifier::new(
            &config,
            uuid::Uuid::from_u128(0x6ba7b810_9dad_11d1_80b4_00c04fd430c8),
            Arc::new(FixedClock),
            Duration::from_secs(1),
            Arc::new(imsgate_broker::metrics::Metrics::new()),
        )
        .expect("verifier");
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Fixture {
            rt,
            verifier,
            hmac: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes()),
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let token = if mode & 1 == 1 {
        let value = String::from_utf8_lossy(rest);
        match caller_auth::bearer(&value) {
            Some(t) => {
                assert!(!t.is_empty() && !t.contains(' '));
                t.to_owned()
            }
            None => return,
        }
    } else {
        let mut it = rest.splitn(2, |b| *b == 0xFF);
        let header = it.next().unwrap_or_default();
        let claims = it.next().unwrap_or_default();
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let sig = aws_lc_rs::hmac::sign(&f.hmac, input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    };
    let got = f.rt.block_on(f.verifier.verify(&token));
    if got.is_ok() {
        assert!(token.len() <= MAX_CALLER_TOKEN_BYTES);
    }
});
