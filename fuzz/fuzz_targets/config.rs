//! The configuration file: `Config::parse` on TOML text (TOML syntax, unknown keys collected
//! with their line, then validation of every section). Nothing is read from disk while parsing;
//! secret references are only parsed.
#![no_main]

use std::path::Path;

use imsgate_broker::config::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/nonexistent/imsgate-fuzz")) {
        Ok(_) => {}
        Err(e) => {
            assert!(!e.problems.is_empty());
            let _ = e.to_string();
        }
    }
});
