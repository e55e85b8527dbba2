//! `imsgate user-tokens list|reseal`: users' stored Adobe sign-ins, for operators. Token values
//! are never printed.

use std::path::Path;
use std::sync::Arc;

use imsgate_broker::Broker;
use imsgate_broker::clock::SystemClock;
use imsgate_broker::user_login::UserTokenVault;

use crate::run::{CliResult, load};

fn vault(config: &Path) -> Result<Arc<UserTokenVault>, Vec<String>> {
    let broker = Broker::build(load(config)?, Arc::new(SystemClock))?;
    broker
        .state
        .user_login
        .as_ref()
        .map(|ul| ul.service.vault.clone())
        .ok_or_else(|| {
            vec![format!(
                "{}: no [user_login] section; user sign-in is not configured",
                config.display()
            )]
        })
}

fn rfc3339(ms: u64) -> String {
    imsgate_broker::http::rfc3339(ms)
}

pub async fn list(config: &Path) -> CliResult {
    let vault = vault(config)?;
    let grants = vault.grants().await.map_err(|e| vec![e.to_string()])?;
    if grants.is_empty() {
        println!("no user has signed in");
    }
    for g in grants {
        let refresh = match g.refresh_expires_ms {
            Some(ms) => format!("refresh until {}", rfc3339(ms)),
            None => "no refresh token".to_owned(),
        };
        println!(
            "{}  {}  access until {}  {}  key {}{}",
            g.user_ref,
            g.ims_user_id,
            rfc3339(g.access_expires_ms),
            refresh,
            g.kid,
            if g.current_key { "" } else { " (older key)" }
        );
    }
    Ok(())
}

pub async fn reseal(config: &Path) -> CliResult {
    let vault = vault(config)?;
    let (done, problems) = vault.reseal_all().await.map_err(|e| vec![e.to_string()])?;
    println!(
        "re-sealed {done} grant(s) with key {}",
        vault.sealer.current_kid()
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
