#!/usr/bin/env bash
# The keyring helper's round trip against this machine's real store, and interop with Docker's own helper
# for it when one is given: ours stores -> Docker's gets, lists and erases; Docker's stores -> ours gets,
# lists and erases. Run by the CI workflow on Linux (Secret Service), macOS (Keychain) and Windows
# (Credential Manager), where the platform's store and Docker's helper are real; under Wine the Windows
# backend's tests say what Wine cannot check.
#   usage: keyring-roundtrip.sh OUR_HELPER [DOCKER_HELPER]
set -euo pipefail
ours="$1"
docker="${2:-}"
key="https://roundtrip-$$-${RANDOM}.regkit.test"
fail() {
  echo "keyring-roundtrip: $*" >&2
  exit 1
}
json() { printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}' "$key" "$1" "$2"; }
# The helper answers `get` with ServerURL, Username, Secret in that order, as Docker's do.
expect_get() { # helper username secret
  local got
  got="$(printf '%s' "$key" | "$1" get)" || fail "$1 get $key failed: $got"
  [ "$got" = "$(json "$2" "$3")" ] || fail "$1 get $key answered $got"
}
expect_listed() { # helper username
  "$1" list | grep -qF "\"$key\":\"$2\"" || fail "$1 list does not show $key"
}
expect_gone() { # helper
  local got
  if got="$(printf '%s' "$key" | "$1" get)"; then fail "$1 still finds $key: $got"; fi
  [ "$got" = "credentials not found in native keychain" ] || fail "$1 get after erase answered $got"
}

json us s1 | "$ours" store
json us 'sécret-2' | "$ours" store
expect_get "$ours" us 'sécret-2'
expect_listed "$ours" us
printf '%s' "$key" | "$ours" erase
expect_gone "$ours"
printf '%s' "$key" | "$ours" erase # erasing what is not there succeeds
echo "keyring-roundtrip: $ours: store, replace, get, list, erase"

[ -n "$docker" ] || exit 0
json us from-regkit | "$ours" store
expect_get "$docker" us from-regkit
expect_listed "$docker" us
printf '%s' "$key" | "$docker" erase
expect_gone "$ours"
json them from-docker | "$docker" store
expect_get "$ours" them from-docker
expect_listed "$ours" them
printf '%s' "$key" | "$ours" erase
expect_gone "$docker"
echo "keyring-roundtrip: interop with $docker both ways"
