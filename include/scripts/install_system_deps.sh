#!/bin/sh
# Installs what the real counterparts need from Debian: Dovecot (IMAP and POP3) serves the test and
# demo mailboxes, isync provides `mbsync` (the reference client of the mailbox benchmark), and the system
# user `vmail` owns the Maildirs when Dovecot runs as root (Dovecot refuses uid 0 for mail access).
# Idempotent: does nothing when everything is present. Needs root or passwordless sudo to install.
set -eu

packages=""
[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1 || packages="$packages dovecot-core"
[ -e /usr/lib/dovecot/imap ] || packages="$packages dovecot-imapd"
[ -e /usr/lib/dovecot/pop3 ] || packages="$packages dovecot-pop3d"
command -v mbsync >/dev/null 2>&1 || packages="$packages isync"
# redis-server is the Celery broker of the distributed test (tests/deploy/test_distributed.py starts its own).
command -v redis-server >/dev/null 2>&1 || packages="$packages redis-server"
# docker-compose validates docker-compose.yaml in tests/deploy (`config` needs no Docker engine).
command -v docker-compose >/dev/null 2>&1 || packages="$packages docker-compose"
# Headless Chromium drives the operator console's browser tests (Playwright with executable_path).
[ -x /usr/bin/chromium ] || packages="$packages chromium"
command -v chromedriver >/dev/null 2>&1 || packages="$packages chromium-driver"
need_vmail=""
if [ "$(id -u)" -eq 0 ] && ! getent passwd vmail >/dev/null 2>&1; then
    need_vmail="yes"
fi

if [ -z "$packages" ] && [ -z "$need_vmail" ]; then
    echo "system dependencies present (dovecot, mbsync, redis-server, chromium)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
else
    echo "need root to install:$packages (run: apt-get install -y$packages)" >&2
    exit 1
fi

if [ -n "$packages" ]; then
    echo ">> installing Debian packages:$packages"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # The package scripts try to start the system-wide Dovecot and Redis services; the project never uses them
    # (it runs its own instances with their own configuration), so service starts are declined while installing.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $packages
fi
if [ -n "$need_vmail" ]; then
    echo ">> creating the system user vmail (owner of the Maildirs of the project's Dovecot)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail
fi
