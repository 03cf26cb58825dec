# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file
# Shared by the scripts in cross/ and bench/: target names, paths, pinned tool versions.
# Source it; it defines variables and functions only.

# Pinned so that a fresh clone builds the same way as the figures in cross/README.md.
SHOAL_ZIGBUILD_VERSION="${SHOAL_ZIGBUILD_VERSION:-0.24.1}"
SHOAL_ZIGLANG_VERSION="${SHOAL_ZIGLANG_VERSION:-0.17.1}"

SHOAL_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Cross builds get their own target dir so they never wait for (or invalidate) native builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/shoal/cross-target}"
SHOAL_DIST="$CARGO_TARGET_DIR/dist"
# The device binary. The hub (`shoal`) is built natively: it embeds rmqtt, whose aws-lc and
# quinn would add tens of minutes of cold cross-compilation per target to CI for a binary that
# runs on a server or a gateway that can build it.
SHOAL_BINARIES=(shoal-agent)
SHOAL_ARCHES=(x86_64 aarch64 armv7)

# shoal_triple ARCH: the Rust target triple of a short architecture name.
shoal_triple() {
    case "$1" in
        x86_64 | amd64) echo x86_64-unknown-linux-musl ;;
        aarch64 | arm64) echo aarch64-unknown-linux-musl ;;
        armv7 | arm) echo armv7-unknown-linux-musleabihf ;;
        *)
            echo "unknown architecture '$1': use one of ${SHOAL_ARCHES[*]}" >&2
            return 1
            ;;
    esac
}

# shoal_qemu ARCH: the qemu-user binary that runs ARCH's binaries here (empty when native).
shoal_qemu() {
    case "$(shoal_triple "$1")" in
        x86_64-*) [ "$(uname -m)" = x86_64 ] || echo qemu-x86_64-static ;;
        aarch64-*) [ "$(uname -m)" = aarch64 ] || echo qemu-aarch64-static ;;
        armv7-*) echo qemu-arm-static ;;
    esac
}

shoal_log() { printf '==> %s\n' "$*" >&2; }

# shoal_model_arch ARCH: the OCI name the agent reports for ARCH (shoal_model::node::oci_arch).
shoal_model_arch() {
    case "$(shoal_triple "$1")" in
        x86_64-*) echo amd64 ;;
        aarch64-*) echo arm64 ;;
        armv7-*) echo armv7 ;;
    esac
}
