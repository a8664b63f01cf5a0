#!/usr/bin/env bash
# Installs a regkit release for this runner (GitHub Action, action.yml): downloads the archive and
# SHA256SUMS, refuses an archive whose checksum does not match, unpacks it under REGKIT_INSTALL_DIR and puts
# it on PATH (GITHUB_PATH when set). Linux (static musl build) and macOS, x86_64 and arm64 (Linux arm64
# has no release build).
#   REGKIT_VERSION       release tag, e.g. v0.1.0 (required)
#   REGKIT_RELEASE_URL   where releases are (default https://github.com/regkit/regkit/releases/download)
#   RUNNER_OS, RUNNER_ARCH   as GitHub sets them (Linux/macOS, X64/ARM64)
set -euo pipefail
fail() {
  echo "regkit-install: $*" >&2
  exit 2
}
version="${REGKIT_VERSION:-}"
[ -n "$version" ] || fail "no version given (a release tag such as v0.1.0)"
base="${REGKIT_RELEASE_URL:-https://github.com/regkit/regkit/releases/download}"
case "${RUNNER_OS:-$(uname -s)}/${RUNNER_ARCH:-$(uname -m)}" in
  Linux/X64 | Linux/x86_64) target=x86_64-unknown-linux-musl ;;
  macOS/ARM64 | Darwin/arm64) target=aarch64-apple-darwin ;;
  macOS/X64 | Darwin/x86_64) target=x86_64-apple-darwin ;;
  *) fail "no regkit release build for ${RUNNER_OS:-$(uname -s)}/${RUNNER_ARCH:-$(uname -m)} (Linux x86_64, macOS)" ;;
esac
name="regkit-$version-$target"
dir="${REGKIT_INSTALL_DIR:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}/regkit}"
mkdir -p "$dir"
cd "$dir"
curl -fsSL --retry 3 -o SHA256SUMS "$base/$version/SHA256SUMS"
curl -fsSL --retry 3 -o "$name.tar.gz" "$base/$version/$name.tar.gz"
grep -q " $name.tar.gz\$" SHA256SUMS || fail "SHA256SUMS of $version does not list $name.tar.gz"
if command -v sha256sum >/dev/null; then check=(sha256sum -c -); else check=(shasum -a 256 -c -); fi
grep " $name.tar.gz\$" SHA256SUMS | "${check[@]}" >/dev/null || fail "$name.tar.gz does not match its SHA-256 in SHA256SUMS"
tar -xzf "$name.tar.gz"
echo "$dir/$name" >>"${GITHUB_PATH:-/dev/null}"
echo "regkit-install: $("$dir/$name/regkit" --version) in $dir/$name"
