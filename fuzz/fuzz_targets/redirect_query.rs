//! The redirects IMS sends the browser back with: the consent callback (`admin_consent`, `state`,
//! `id_token`, `error`) and the sign-in callback (`code`, `state`, `error`), parsed from the raw
//! query string an attacker fully controls. A consented redirect's id_token goes on to the
//! id_token header parser, as in the broker.
#![no_main]

use imsgate_ims::{consent, id_token, user_oauth};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    match consent::parse_callback(&query) {
        Ok(cb) => {
            assert!(
                cb.state.as_deref().is_some_and(|s| !s.is_empty())
                    || matches!(cb.outcome, consent::ConsentOutcome::Failed(_))
            );
            if let consent::ConsentOutcome::Consented { id_token } = &cb.outcome {
                assert!(!id_token.is_empty());
                if let Ok(t) = id_token::parse(id_token) {
                    assert!(!t.kid().is_empty());
                }
            }
        }
        Err(e) => {
            let _ = e.code();
        }
    }
    match user_oauth::parse_redirect(&query) {
        Ok(r) => {
            assert!(r.state.as_deref().is_some_and(|s| !s.is_empty()));
            match &r.outcome {
                user_oauth::AuthorizeOutcome::Code(c) => {
                    assert!(
                        !c.is_empty() && c.len() <= 4096 && c.bytes().all(|b| b.is_ascii_graphic())
                    );
                }
                user_oauth::AuthorizeOutcome::Error(e) => {
                    assert!(!e.is_empty() && e.len() <= 64);
                }
            }
        }
        Err(e) => {
            let _ = e.code();
        }
    }
});
