#!/usr/bin/env bash
# Installs what the build, the test suite and the demo need, and nothing that is already there.
# Debian/Ubuntu: apt packages (as root, or through sudo). Idempotent: a second run only checks.
set -euo pipefail

# command -> Debian package providing it
declare -A tools=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [htpasswd]=apache2-utils
  [jq]=jq
  [dbus-daemon]=dbus
  [dbus-run-session]=dbus
  [gnome-keyring-daemon]=gnome-keyring
  [secret-tool]=libsecret-tools
  [docker-credential-secretservice]=golang-docker-credential-helpers
  [openssl]=openssl
  [hyperfine]=hyperfine
  [cc]=gcc
  [docker]=docker.io
)

missing=()
for tool in "${!tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${tools[$tool]}")
done
# dbus-x11 provides dbus-launch, which gnome-keyring falls back to in some set-ups.
dpkg -s dbus-x11 >/dev/null 2>&1 || missing+=(dbus-x11)

if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install-deps: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is required (https://rustup.rs), install a stable Rust toolchain first" >&2
  exit 1
fi
