#!/usr/bin/env bash
# Make the build stage's base image without a registry: a minimal Debian bookworm root file
# system with python3 and python3-venv (debootstrap, from a Debian mirror), imported into the
# local docker daemon as mlwarden-base:bookworm. Needs root, debootstrap and docker.
#   deploy/make-base.sh [ROOTFS_DIR] [MIRROR]
set -euo pipefail
rootfs=${1:-/tmp/mlwarden-base-rootfs}
mirror=${2:-http://deb.debian.org/debian}
if [ ! -x "$rootfs/usr/bin/python3" ]; then
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror"
fi
tar -C "$rootfs" -c . | docker import - mlwarden-base:bookworm
