#!/bin/sh
# Installs what the container tests (tests/test_container.py, marker `container`) need:
# buildah (builds and runs OCI images without a Docker engine) and debootstrap (builds the
# stand-in base image). Idempotent and quiet; needs root and Debian's apt repositories.
# Exits 0 without installing anything when it cannot (not root, no apt): the tests then skip
# with a reason.
set -eu

PACKAGES="buildah debootstrap"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-container-tools: cannot install$missing (needs root and apt-get); container tests will skip" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Another apt run on the same machine holds the lock for a while: wait for it rather than fail.
apt_opts="-q -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3"
log=$(mktemp)
# shellcheck disable=SC2086  # word splitting of the option and package lists is intended
if ! { apt-get $apt_opts update && apt-get $apt_opts install -y --no-install-recommends $missing; } >"$log" 2>&1
then
    tail -n 20 "$log" >&2
    echo "install-container-tools: apt-get could not install$missing; container tests will skip" >&2
fi
rm -f "$log"
exit 0
