//! External programs the tests drive for real (nginx, curl, Chromium, systemd-analyze, …): found
//! on `PATH`, or skipped with a printed reason on a developer machine that lacks them. CI sets
//! `IMSGATE_REQUIRE_TOOLS=1` (in `.ci/run`), and then a missing program fails the test instead,
//! so a skipped check can never pass CI.
#![allow(dead_code)]

use std::path::PathBuf;

/// The program's path, or `None` after printing why the calling test is skipped. Panics when
/// `IMSGATE_REQUIRE_TOOLS=1` and the program is missing.
pub fn external_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        if std::env::var("IMSGATE_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{name} is required (IMSGATE_REQUIRE_TOOLS=1) but is not on PATH");
        }
        eprintln!("SKIPPED: {name} is not on PATH; install it to run this test");
    }
    found
}
