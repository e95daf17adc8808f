#!/usr/bin/env bash
# The README's first command as a newcomer runs it on a fresh Debian 13 "trixie" (python3 is 3.13; its archive has no
# 3.11 or 3.12): a minimal root filesystem made with debootstrap, the packages docs/install.md lists for Debian, a clone of
# this repository's HEAD inside, then `make run`. Passes when make run completes, or when it stops before building
# any stage environment with one ERROR line and no traceback. Root only (debootstrap, chroot, mounts).
#
# With EXTRA_PYTHON=<a CPython prefix on this host, e.g. /root/.pyenv/versions/3.12.1> that interpreter is mounted
# at the same path inside and linked as /usr/local/bin/python3.X: the machine of a user who installed one more Python.
#
# The root filesystem is cached in $DEEPLENS_SSD_CACHE (default /var/cache/deeplens-ssd) between runs; each run
# clones afresh. A chroot inherits nothing from the host, so it gets the host's DNS settings and CA bundle (this
# network's TLS proxy needs it), and the variables that point pip and uv at that bundle.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${DEEPLENS_SSD_CACHE:-/var/cache/deeplens-ssd}
ROOT=$CACHE/debian13
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,make,git,ca-certificates,libgomp1,libquadmath0  # docs/install.md, "Debian 13"
LOG=${LOG:-$REPO/results/fresh_machine/debian13.log}

[ "$(id -u)" = 0 ] || { echo "ERROR: $0 needs root (debootstrap, chroot, mounts)"; exit 1; }
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
if [ ! -e "$ROOT/.complete" ]; then
    echo "Making a Debian 13 root filesystem in $ROOT (once; a few minutes) ..."
    rm -rf "$ROOT" && mkdir -p "$CACHE"
    debootstrap --variant=minbase --include=$PACKAGES trixie "$ROOT" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -20 "$CACHE/debootstrap.log"; echo "ERROR: debootstrap failed (log: $CACHE/debootstrap.log)"; exit 1; }
    touch "$ROOT/.complete"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
chroot "$ROOT" dpkg -s ${PACKAGES//,/ } >/dev/null 2>&1 ||  # a root filesystem cached before the list grew
    chroot "$ROOT" bash -c "apt-get update -qq && apt-get install -y -qq ${PACKAGES//,/ }" >>"$CACHE/debootstrap.log" 2>&1
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-certificates.crt"

mkdir -p "$ROOT/mnt/repo"
mount --bind "$REPO" "$ROOT/mnt/repo" && mount -o remount,bind,ro "$ROOT/mnt/repo"
mount -t proc proc "$ROOT/proc"
mount --bind /dev "$ROOT/dev"
mounted=("$ROOT/dev" "$ROOT/proc" "$ROOT/mnt/repo")
rm -f "$ROOT"/usr/local/bin/python3.*
if [ -n "${EXTRA_PYTHON:-}" ]; then
    mkdir -p "$ROOT$EXTRA_PYTHON"
    mount --bind "$EXTRA_PYTHON" "$ROOT$EXTRA_PYTHON"
    mounted+=("$ROOT$EXTRA_PYTHON")
    executable=$(ls "$EXTRA_PYTHON"/bin/python3.* | grep -E 'python3\.[0-9]+$' | head -1)
    ln -s "$executable" "$ROOT/usr/local/bin/$(basename "$executable")"
fi
trap 'umount "${mounted[@]}"' EXIT

mkdir -p "$(dirname "$LOG")"
bundle=/etc/ssl/certs/host-ca-certificates.crt
started=$(date +%s)
set +e
chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=$bundle PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle GIT_CONFIG_COUNT=1 \
    GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*' bash -c '
        echo "python3: $(python3 --version)"
        rm -rf /root/deeplens-ssd && git clone -q /mnt/repo /root/deeplens-ssd && cd /root/deeplens-ssd && make run
        status=$?
        echo "stage environments built: $(ls -d .venvs/*/.complete 2>/dev/null | wc -l)"
        exit $status' >"$LOG" 2>&1
status=$?
set -e
seconds=$(($(date +%s) - started))
tail -5 "$LOG"
echo "make run in Debian 13 exited $status after ${seconds} s (log: $LOG)"
if [ $status = 0 ]; then
    echo "PASSED: the README's first command completed on Debian 13"
    exit 0
fi
errors=$(grep -c '^ERROR' "$LOG" || true)
if grep -q 'Traceback' "$LOG" || [ "$errors" != 1 ] || ! grep -q '^stage environments built: 0$' "$LOG"; then
    echo "FAILED: make run neither completed nor stopped with one ERROR line before building a stage environment"
    exit 1
fi
echo "PASSED: make run stopped before building any stage environment, with one message:"
grep '^ERROR' "$LOG"
