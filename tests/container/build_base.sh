#!/bin/sh
# Builds (once per machine) the stand-in for the official PyTorch base image that the container tests
# build the project's Dockerfile on: a minimal Debian made with debootstrap, a Python venv on PATH (as
# the official image has its conda env on PATH) holding the CPU build of the torch that requirements.txt
# pins, /bin/bash, sh and pip. Prints the local image name on stdout; progress goes to stderr.
#
#   tests/container/build_base.sh            # -> localhost/runet-base:torch-<version>
#
# Cache, keyed by the torch version and this script's own content (the recipe):
#   $RUNET_CONTAINER_CACHE/torch-<version>/base-<recipe>.oci.tar    the image, as an OCI archive
#   $RUNET_CONTAINER_CACHE/torch-<version>/wheels/                  torch and its dependencies
#   $RUNET_CONTAINER_CACHE/debs/                                    debootstrap's package cache
# RUNET_CONTAINER_CACHE defaults to /var/cache/runet-container. The image also stays in buildah's
# storage under its name, labelled with the recipe, so a warm run costs one `buildah inspect`.
# Environment: TORCH_VERSION (default: the pin in requirements.txt), PYTHON (the host Python whose pip
# downloads the wheels; default python3), DEBIAN_SUITE (bookworm: python3.11, the torch wheel's cp311),
# DEBIAN_MIRROR. Needs root, buildah, debootstrap and flock.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}
cache_root=${RUNET_CONTAINER_CACHE:-/var/cache/runet-container}

torch_version=${TORCH_VERSION:-$(sed -n 's/^torch==\([^ ;#]*\).*/\1/p' "$root/requirements.txt")}
if [ -z "$torch_version" ]; then
    echo "build_base: no torch==<version> pin in $root/requirements.txt" >&2
    exit 2
fi
# The venv's Python is Debian's: its version picks the wheel (bookworm: 3.11).
case $suite in
    bookworm) py_version=3.11 ;;
    trixie) py_version=3.13 ;;
    *) echo "build_base: unknown Debian suite $suite" >&2; exit 2 ;;
esac

recipe=$(printf '%s %s %s\n' "$torch_version" "$suite" "$(sha256sum "$0" | cut -c1-64)" | sha256sum | cut -c1-12)
image=localhost/runet-base:torch-$torch_version
cache=$cache_root/torch-$torch_version
archive=$cache/base-$recipe.oci.tar
mkdir -p "$cache" "$cache_root/debs"

log() { echo "build_base: $*" >&2; }

image_recipe() {
    buildah inspect --type image --format '{{index .OCIv1.Config.Labels "runet.base.recipe"}}' "$image" \
        2>/dev/null || true
}

# One build at a time per cache folder; a second caller waits, then finds the image.
exec 9>"$cache/.lock"
flock 9

if [ "$(image_recipe)" = "$recipe" ]; then
    echo "$image"
    exit 0
fi
if [ -s "$archive" ]; then
    log "loading $archive"
    id=$(buildah pull --quiet "oci-archive:$archive")
    buildah tag "$id" "$image"
    echo "$image"
    exit 0
fi

log "building $image (torch $torch_version, Debian $suite, recipe $recipe)"
ctr=""
cleanup() {
    if [ -n "$ctr" ]; then
        buildah umount "$ctr" >/dev/null 2>&1 || true
        buildah rm "$ctr" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Torch and its dependencies, fetched with the host's pip configuration (its local wheels and indexes
# where it has them): the stand-in then installs offline, and the same CPU wheel as the host's.
log "downloading torch==$torch_version and its dependencies"
if ! "$python" -m pip download --disable-pip-version-check --only-binary=:all: \
    --python-version "$py_version" --dest "$cache/wheels" "torch==$torch_version" >"$cache/pip.log" 2>&1; then
    tail -n 30 "$cache/pip.log" >&2
    log "pip download failed; its log: $cache/pip.log"
    exit 1
fi

ctr=$(buildah from scratch)
mnt=$(buildah mount "$ctr")
log "debootstrap $suite into $mnt"
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --cache-dir="$cache_root/debs" "$suite" "$mnt" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -n 30 "$cache/debootstrap.log" >&2
    log "debootstrap failed; its log: $cache/debootstrap.log"
    exit 1
fi

buildah config --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --env VIRTUAL_ENV=/opt/venv --workingdir / --cmd /bin/bash \
    --label "runet.base.recipe=$recipe" --label "runet.base.torch=$torch_version" "$ctr"

log "installing torch==$torch_version into /opt/venv"
buildah run --isolation chroot -v "$cache/wheels:/tmp/wheels:ro" "$ctr" -- /bin/sh -euc "
    python3 -m venv /opt/venv
    pip install --quiet --no-cache-dir --disable-pip-version-check --no-index --find-links /tmp/wheels \
        'torch==$torch_version'
    python -W ignore -c 'import torch; print(\"build_base: torch\", torch.__version__, \"in /opt/venv\")'
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /root/.cache
" >&2

buildah umount "$ctr" >/dev/null
buildah commit --quiet --rm "$ctr" "$image" >/dev/null
ctr=""

log "saving $archive"
rm -f "$cache"/base-*.oci.tar
buildah push --quiet "$image" "oci-archive:$archive.tmp:$image" >&2
mv "$archive.tmp" "$archive"
echo "$image"
