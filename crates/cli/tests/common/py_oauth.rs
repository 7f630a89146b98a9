//! What the tests driven by the independent Python OAuth client share: the
//! virtual environment's interpreter (`STACKSYNC_TEST_PY_OAUTH`, made by
//! `ensure_py_oauth` in `scripts/lib.sh`), `stacksync admin` and the key
//! and secret `admin oauth add` prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::BIN;

/// The virtual environment's python, or `None` after saying that `what`
/// is skipped; under `CI=true` a missing interpreter fails the test.
pub fn python(what: &str) -> Option<PathBuf> {
    interpreter("STACKSYNC_TEST_PY_OAUTH", "ensure_py_oauth", what)
}

/// The interpreter `var` names (which `scripts/lib.sh`'s `ensure` sets
/// up), or `None` after saying that `what` is skipped; under `CI=true` a
/// missing one fails the test.
pub fn interpreter(var: &str, ensure: &str, what: &str) -> Option<PathBuf> {
    match std::env::var(var) {
        Ok(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            assert!(
                path.exists(),
                "{var} names {} which does not exist",
                path.display()
            );
            Some(path)
        }
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{var} is not set under CI=true: {what} must run (scripts/test sets it up with {ensure})"
        ),
        _ => {
            eprintln!("SKIP: {var} is not set; {what} is skipped (run scripts/test)");
            None
        }
    }
}

/// Runs `stacksync admin --config CONFIG ARGS...`; its standard output.
pub fn admin(config: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["admin", "--config"])
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("admin runs");
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `key: ...` and `secret: ...` from `admin oauth add`.
pub fn registered(out: &str) -> (String, String) {
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {out:?}"))
            .trim()
            .to_owned()
    };
    (line("key: "), line("secret: "))
}
