#!/usr/bin/env bash
# Sourced by scripts/test and scripts/demo: prepares the machine (only what is missing), the venv
# and the private test dockerd; exports PATH, VENV and DOCKER_HOST.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
if [ -t 2 ]; then say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }; else say() { printf '==> %s\n' "$*" >&2; }; fi

if [ "$(id -u)" -ne 0 ]; then
    echo "$0 must run as root (private dockerd, postgres user, named volumes)" >&2
    exit 1
fi

# 1. System packages, only for what is missing (a prepared machine never hits apt).
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
test -x /usr/lib/postgresql/15/bin/postgres || missing+=(postgresql-15)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # promtool; policy-rc.d: no server
if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    # Keep package scripts from starting services (a system dockerd with a bridge, a postgres
    # cluster on 5432): the tests run their own.
    policy_created=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
    fi
    rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } || rc=$?
    [ -z "$policy_created" ] || rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || exit "$rc"
fi

# 2. The venv, re-synced when requirements-test.txt or pyproject.toml change.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi
stamp=$(cat requirements-test.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements-test.sha256" 2>/dev/null || true)" != "$stamp" ]; then
    say "installing requirements-test.txt and the project (editable)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-test.txt
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e . --no-deps
    echo "$stamp" > "$VENV/.requirements-test.sha256"
fi
export PATH="$VENV/bin:$PATH"

# 3. The private test Docker engine (left running: it is shared infrastructure).
DOCKER_HOST=$("$VENV/bin/python" -m tests.harness.dockerd start)
export DOCKER_HOST

