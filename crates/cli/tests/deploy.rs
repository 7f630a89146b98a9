//! The deployment files of `deploy/` are checked against what reads them:
//!
//! * the server configurations (`deploy/config/production.toml`,
//!   `deploy/kubernetes/server.toml`) are loaded by the real binary, which
//!   refuses unknown keys, and the `[storage.swift]` table (whose type
//!   ignores unknown keys) round-trips through the blob store's own
//!   `SwiftConfig` with no key lost;
//! * the systemd units pass `systemd-analyze verify` without a single
//!   warning, with their `ExecStart=` pointing at the built binary, and
//!   their command lines are accepted by that binary;
//! * the Kubernetes manifests pass `deploy/check_kubernetes.py`: strict
//!   Kubernetes schemas, KEDA's CRD models, references between the
//!   resources, and the KEDA trigger watching the request queue the bus
//!   really declares (`stacksync_bus::Topology`).
//!
//! Each check is also run on a broken copy (an unknown key, a misspelt unit
//! setting, a field of the wrong type) that it must refuse, so a check that
//! silently passes everything fails this test.
//!
//! `systemd-analyze` comes with systemd; the Kubernetes validator is the
//! python of `STACKSYNC_TEST_K8S_VALIDATOR` (`ensure_k8s_validator` in
//! `scripts/lib.sh`). Without them the check says SKIP, and fails under
//! `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_stacksync");
/// Where the units say the binary is installed.
const INSTALLED_BIN: &str = "/usr/local/bin/stacksync";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// `None` after printing SKIP, or a failure under `CI=true`.
fn missing(what: &str, why: &str) -> Option<PathBuf> {
    assert!(!in_ci(), "{why} under CI=true: {what} must run");
    eprintln!("SKIP: {why}; {what} is skipped (run scripts/test)");
    None
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---- server configuration -------------------------------------------------

/// Runs `stacksync server --config FILE` with a data folder that cannot be
/// made (its parent is a file), which is the first thing the server does
/// after loading its configuration: `Ok` if the file was loaded, the
/// loader's error otherwise. Nothing is reached over the network.
fn server_loads(config: &Path) -> Result<(), String> {
    let scratch = tempfile::tempdir().expect("temp dir");
    let blocker = scratch.path().join("a-file");
    std::fs::write(&blocker, b"").expect("write");
    let mut cmd = Command::new(BIN);
    cmd.arg("server")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(blocker.join("data"))
        .env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("STACKSYNC_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("the server binary runs");
    let said = text(&out);
    assert!(!out.status.success(), "the server started?\n{said}");
    if said.contains("parsing config file") || said.contains("reading config file") {
        return Err(said);
    }
    assert!(
        said.contains("creating data folder"),
        "the server stopped somewhere unexpected (not at its data folder):\n{said}"
    );
    Ok(())
}

/// Every key of `given` is in `known` (recursively through tables).
fn keys_known(given: &toml::Value, known: &toml::Value, at: &str) -> Result<(), String> {
    if let (Some(given), Some(known)) = (given.as_table(), known.as_table()) {
        for (key, value) in given {
            let here = format!("{at}.{key}");
            let Some(k) = known.get(key) else {
                return Err(format!("{here} is not a key the server reads"));
            };
            keys_known(value, k, &here)?;
        }
    }
    Ok(())
}

/// `[storage.swift]` deserialises into the blob store's `SwiftConfig` and
/// every key given is one it has (it does not refuse unknown keys itself).
fn swift_section_known(config: &toml::Value) -> Result<(), String> {
    let Some(swift) = config.get("storage").and_then(|s| s.get("swift")) else {
        return Ok(());
    };
    let parsed: stacksync_blobstore::SwiftConfig = swift
        .clone()
        .try_into()
        .map_err(|e| format!("[storage.swift]: {e}"))?;
    let back = toml::Value::try_from(&parsed).map_err(|e| format!("[storage.swift]: {e}"))?;
    keys_known(swift, &back, "storage.swift")
}

fn config_checks(path: &Path) -> Result<toml::Value, String> {
    server_loads(path)?;
    let value: toml::Value = toml::from_str(&read(path)).map_err(|e| e.to_string())?;
    swift_section_known(&value)?;
    Ok(value)
}

fn get<'a>(v: &'a toml::Value, path: &str) -> &'a toml::Value {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .unwrap_or_else(|| panic!("no {path}"))
}

#[test]
fn server_configurations_are_read_by_the_server() {
    for file in [
        "deploy/config/production.toml",
        "deploy/kubernetes/server.toml",
    ] {
        let path = repo().join(file);
        let config = config_checks(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        // What the deployment guide promises of them.
        assert_eq!(
            get(&config, "bus.kind").as_str(),
            Some("rabbitmq"),
            "{file}"
        );
        assert_eq!(
            get(&config, "bus.queue_kind").as_str(),
            Some("quorum"),
            "{file}"
        );
        assert_eq!(
            get(&config, "storage.kind").as_str(),
            Some("swift"),
            "{file}"
        );
        assert_eq!(
            get(&config, "storage.swift.auth.kind").as_str(),
            Some("keystone_v3"),
            "{file}"
        );
        assert!(
            get(&config, "database.url")
                .as_str()
                .is_some_and(|u| u.starts_with("postgres://")),
            "{file}"
        );
    }
    let production =
        toml::from_str::<toml::Value>(&read(&repo().join("deploy/config/production.toml")))
            .expect("TOML");
    assert!(
        get(&production, "api.trusted_proxies")
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "production.toml: the TLS proxy in front must be trusted"
    );
}

#[test]
fn configuration_checks_refuse_unknown_keys() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let original = read(&repo().join("deploy/config/production.toml"));
    // A misspelt top-level key: the server's loader refuses it.
    let typo = scratch.path().join("typo.toml");
    std::fs::write(&typo, format!("lisen = \"127.0.0.1:1\"\n{original}")).expect("write");
    let err = config_checks(&typo).expect_err("an unknown key must be refused");
    assert!(err.contains("unknown field `lisen`"), "{err}");
    // A misspelt key in [storage.swift], which serde alone would ignore.
    let swift_typo = scratch.path().join("swift-typo.toml");
    let mutated = original.replacen("max_concurrency = ", "max_concurency = ", 1);
    assert_ne!(mutated, original, "production.toml sets max_concurrency");
    std::fs::write(&swift_typo, mutated).expect("write");
    let err = config_checks(&swift_typo).expect_err("an unknown Swift key must be refused");
    assert!(err.contains("storage.swift.max_concurency"), "{err}");
}

// ---- systemd ----------------------------------------------------------------

const UNITS: [(&str, bool); 3] = [
    ("deploy/systemd/stacksync-server.service", false),
    ("deploy/systemd/stacksync@.service", false),
    ("deploy/systemd/user/stacksync.service", true),
];

fn systemd_analyze() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/systemd-analyze");
    if path.exists() {
        Some(path)
    } else {
        missing(
            "systemd-analyze verify of deploy/systemd",
            "no /usr/bin/systemd-analyze",
        )
    }
}

/// `systemd-analyze verify` of `unit` (its text) under the file name
/// `name`, with `ExecStart=` pointing at the built binary: `Err` with what
/// it said unless it passed in silence (it warns of unknown settings and
/// bad values but exits 0 for them).
fn verify_unit(analyze: &Path, name: &str, unit: &str, user: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(unit.contains(INSTALLED_BIN), "{name} runs {INSTALLED_BIN}");
    let file = dir.path().join(name);
    std::fs::write(&file, unit.replace(INSTALLED_BIN, BIN)).expect("write unit");
    let mut cmd = Command::new(analyze);
    cmd.arg("verify").arg("--man=no");
    if user {
        // A user manager needs a runtime folder; a private one does.
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).expect("mkdir");
        cmd.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    let out = cmd.arg(&file).output().expect("systemd-analyze runs");
    let said = text(&out);
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{name}: systemd-analyze verify: {}\n{said}",
            out.status
        ))
    }
}

/// The arguments of the unit's `ExecStart=` after the binary.
fn exec_args(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart= line");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == INSTALLED_BIN)
        .expect("ExecStart runs the binary");
    words[at + 1..].iter().map(|w| w.to_string()).collect()
}

#[test]
fn systemd_units_verify() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    for (file, user) in UNITS {
        let unit = read(&repo().join(file));
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        verify_unit(&analyze, name, &unit, user).unwrap_or_else(|e| panic!("{e}"));
        if name.ends_with("@.service") {
            // An instance, as `systemctl enable --now stacksync@alice` makes.
            verify_unit(&analyze, &name.replace('@', "@alice"), &unit, user)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // The command line is one the binary accepts (clap refuses unknown
        // subcommands and flags before it answers --help).
        let args = exec_args(&unit);
        let out = Command::new(BIN)
            .args(&args)
            .arg("--help")
            .output()
            .expect("the binary runs");
        assert!(
            out.status.success(),
            "{file}: `stacksync {}` is refused:\n{}",
            args.join(" "),
            text(&out)
        );
    }
}

#[test]
fn systemd_verify_refuses_broken_units() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let unit = read(&repo().join(UNITS[0].0));
    for (from, to) in [
        ("ProtectSystem=strict", "ProtectSystm=strict"),
        ("NoNewPrivileges=yes", "NoNewPrivileges=maybe"),
        ("Restart=on-failure", "Restart=on-failures"),
    ] {
        let broken = unit.replacen(from, to, 1);
        assert_ne!(broken, unit, "the unit has {from}");
        let err = verify_unit(&analyze, "stacksync-server.service", &broken, false)
            .expect_err("a broken unit must be refused");
        assert!(
            err.contains(to.split('=').next().unwrap()) || err.contains("ignoring"),
            "{err}"
        );
    }
    let user = read(&repo().join(UNITS[2].0));
    let broken = user.replacen("Restart=on-failure", "Restart=sometimes", 1);
    verify_unit(&analyze, "stacksync.service", &broken, true)
        .expect_err("a broken user unit must be refused");
    // A binary that is not there.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("stacksync-server.service");
    std::fs::write(&file, unit.replace(INSTALLED_BIN, "/nonexistent/stacksync")).expect("write");
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&file)
        .output()
        .expect("systemd-analyze runs");
    assert!(
        !out.status.success(),
        "a missing ExecStart binary must be refused"
    );
}

// ---- Kubernetes ---------------------------------------------------------------

fn k8s_validator() -> Option<PathBuf> {
    match std::env::var("STACKSYNC_TEST_K8S_VALIDATOR") {
        Ok(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "STACKSYNC_TEST_K8S_VALIDATOR names {} which does not exist",
                p.display()
            );
            Some(p)
        }
        _ => missing(
            "the schema validation of deploy/kubernetes",
            "STACKSYNC_TEST_K8S_VALIDATOR is not set (ensure_k8s_validator in scripts/lib.sh)",
        ),
    }
}

/// The request queue the servers of `deploy/kubernetes/server.toml`
/// declare, named by the bus crate itself.
fn request_queue() -> String {
    let config: toml::Value =
        toml::from_str(&read(&repo().join("deploy/kubernetes/server.toml"))).expect("TOML");
    let namespace = get(&config, "bus.namespace").as_str().expect("a namespace");
    stacksync_bus::Topology::for_namespace(namespace).requests
}

/// `deploy/check_kubernetes.py DIR`, with what `kubectl kustomize DIR`
/// renders when kubectl is installed.
fn check_manifests(python: &Path, dir: &Path) -> Result<String, String> {
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("deploy/check_kubernetes.py"))
        .arg(dir)
        .arg("--queue")
        .arg(request_queue());
    let scratch = tempfile::tempdir().expect("temp dir");
    if let Ok(out) = Command::new("kubectl").arg("kustomize").arg(dir).output() {
        if !out.status.success() {
            return Err(format!(
                "kubectl kustomize {}: {}",
                dir.display(),
                text(&out)
            ));
        }
        let rendered = scratch.path().join("rendered.yaml");
        std::fs::write(&rendered, &out.stdout).expect("write");
        cmd.arg("--rendered").arg(rendered);
    } else {
        eprintln!("kubectl is not installed: the kustomize rendering is not checked");
    }
    let out = cmd.output().expect("the validator runs");
    if out.status.success() {
        Ok(text(&out))
    } else {
        Err(text(&out))
    }
}

#[test]
fn kubernetes_manifests_validate() {
    let Some(python) = k8s_validator() else {
        return;
    };
    let said = check_manifests(&python, &repo().join("deploy/kubernetes"))
        .unwrap_or_else(|e| panic!("deploy/kubernetes:\n{e}"));
    eprintln!("{said}");
}

#[test]
fn kubernetes_validation_refuses_broken_manifests() {
    let Some(python) = k8s_validator() else {
        return;
    };
    let source = repo().join("deploy/kubernetes");
    for (file, from, to, expect) in [
        (
            "deployment.yaml",
            "replicas: 2",
            "replicas: two",
            "replicas",
        ),
        (
            "deployment.yaml",
            "livenessProbe:",
            "livenesProbe:",
            "livenesProbe",
        ),
        ("service.yaml", "port: 80", "port: \"80\"", "port"),
        (
            "keda-scaledobject.yaml",
            "minReplicaCount: 2",
            "minReplicaCount: two",
            "minReplicaCount",
        ),
        (
            "keda-scaledobject.yaml",
            "pollingInterval:",
            "pollInterval:",
            "pollInterval",
        ),
        (
            "keda-scaledobject.yaml",
            "queueName: stacksync.requests",
            "queueName: stacksync.rpc",
            "queue",
        ),
        (
            "keda-triggerauthentication.yaml",
            "key: bus-url",
            "key: bus-uri",
            "bus-uri",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        for entry in std::fs::read_dir(&source).expect("read deploy/kubernetes") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).expect("copy");
        }
        let target = dir.path().join(file);
        let original = read(&target);
        let broken = original.replacen(from, to, 1);
        assert_ne!(broken, original, "{file} has {from}");
        std::fs::write(&target, broken).expect("write");
        let err = check_manifests(&python, dir.path())
            .expect_err(&format!("{file} with `{to}` must be refused"));
        assert!(err.contains(expect), "{file} with `{to}`: {err}");
    }
}
