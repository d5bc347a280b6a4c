#!/usr/bin/env bash
# Install what tests/support/sshhosts.py needs to run SSH hosts in network namespaces:
# openssh-server (sshd, started only by the tests, inside namespaces), openssh-client (ssh,
# ssh-keygen), iproute2 (ip netns, veth, bridge), systemd (systemd-analyze checks the engine unit;
# nothing is started), sudo, plus the account deployer-ops with passwordless sudo (the tests log
# in as it to check a non-root user), and docker.io with mmdebstrap (fresh minimal hosts as
# containers; the tests start dockerd themselves and stop it), postgresql (the state store's
# tests start a throwaway cluster of their own on a loopback port, as the postgres user; the
# package's own cluster is never started), and Debian's chromium (the browser tests drive
# /usr/bin/chromium through Playwright, which never downloads a browser). Idempotent: when all are in place
# it only checks with dpkg and exits in well under a second. It never starts the system sshd: a
# policy-rc.d that refuses service starts is in place during the install, and the ssh service is
# left stopped and disabled.
set -euo pipefail

say() { printf '==> ssh-hosts-setup: %s\n' "$*"; }
need=()
for pkg in openssh-server openssh-client iproute2 systemd sudo docker.io mmdebstrap chromium; do
    if dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        say "skip: $pkg already installed"
    else
        need+=("$pkg")
    fi
done

if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: installing ${need[*]} needs root (apt-get)" >&2
        exit 1
    fi
    policy=/usr/sbin/policy-rc.d
    placed=0
    if [ ! -e "$policy" ]; then
        say "placing $policy (exit 101) so the install starts no service"
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        placed=1
    fi
    trap 'if [ "$placed" = 1 ]; then rm -f "$policy"; fi' EXIT
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    say "apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        say "disabling and stopping the system ssh service (the tests start their own sshd)"
        systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
fi

# PostgreSQL for the state store's tests: only initdb and pg_ctl are used (and the postgres user).
if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    say "skip: postgresql already installed"
else
    [ "$(id -u)" -eq 0 ] || { echo "error: installing postgresql needs root (apt-get)" >&2; exit 1; }
    policy=/usr/sbin/policy-rc.d
    pg_placed=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        pg_placed=1
    fi
    say "apt-get install postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    if [ "$pg_placed" = 1 ]; then rm -f "$policy"; fi
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
        || { echo "error: initdb missing after installing postgresql" >&2; exit 1; }
fi

# A non-root login user with passwordless sudo, as on most real hosts ("ubuntu", "ec2-user").
# The hosts share this machine's accounts. '*' (no password, not locked) lets sshd accept its keys.
if ! id deployer-ops >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || { echo "error: creating the user deployer-ops needs root" >&2; exit 1; }
    say "creating the user deployer-ops (passwordless sudo) for the non-root SSH tests"
    useradd --create-home --shell /bin/bash deployer-ops
    usermod -p '*' deployer-ops
else
    say "skip: user deployer-ops exists"
fi
if [ ! -f /etc/sudoers.d/deployer-ops ]; then
    printf 'deployer-ops ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/deployer-ops
    chmod 0440 /etc/sudoers.d/deployer-ops
fi

# sshd refuses to start without its privilege separation directory.
if [ ! -d /run/sshd ]; then
    say "creating /run/sshd"
    install -d -m 0755 /run/sshd
fi
for tool in /usr/sbin/sshd /usr/bin/ssh /usr/bin/ssh-keygen /usr/sbin/ip /usr/bin/systemd-analyze /usr/bin/sudo /usr/sbin/dockerd /usr/bin/mmdebstrap /usr/bin/chromium; do
    [ -x "$tool" ] || { echo "error: $tool missing after install" >&2; exit 1; }
done
say "ready: $(/usr/sbin/sshd -V 2>&1 | head -n1 || true)"
