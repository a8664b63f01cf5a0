#!/usr/bin/env bash
# The Windows keyring backend's tests, built for x86_64-pc-windows-gnu and run under Wine (`make test`).
# Each run gets a fresh WINEPREFIX under build/wine/ and removes it afterwards. Needs wine, mingw-w64 and the
# rustup target (./scripts/install-deps.sh), and the Windows peers: Docker's docker-credential-wincred.exe and
# the source of a bcryptprimitives.dll stand-in (Wine 8.0 lacks the DLL, and every Rust .exe built by
# current Rust imports ProcessPrng from it), from ../shared/peers/windows or $REGKIT_WINDOWS_PEERS.
# What Wine cannot check (it drops credential attributes) the tests name; the windows-latest CI job runs them
# on Windows.
set -euo pipefail
cd "$(dirname "$0")/.."

peers="${REGKIT_WINDOWS_PEERS:-../shared/peers/windows}"
for file in docker-credential-wincred.exe bcryptprimitives.c bcryptprimitives.def; do
  if [ ! -f "$peers/$file" ]; then
    echo "wine-test: $peers/$file is missing: set REGKIT_WINDOWS_PEERS to the Windows peers directory" >&2
    exit 1
  fi
done
target=x86_64-pc-windows-gnu
out="$PWD/build/wine"
mkdir -p "$out"

dll="$out/bcryptprimitives.dll"
if [ ! -f "$dll" ] || [ "$peers/bcryptprimitives.c" -nt "$dll" ]; then
  x86_64-w64-mingw32-gcc -O2 -shared -s -o "$dll" "$peers/bcryptprimitives.c" "$peers/bcryptprimitives.def" -ladvapi32
fi

# Builds first, so the prefix lives only while tests run.
cargo build --locked --target "$target" -p docker-credential-keyring
cargo test --locked --target "$target" -p regkit --features keyring --lib --no-run

export WINEPREFIX
WINEPREFIX="$(mktemp -d "$out/prefix.XXXXXX")"
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY
cleanup() {
  wineserver -k >/dev/null 2>&1 || true
  rm -rf "$WINEPREFIX"
}
trap cleanup EXIT
# One persistent wineserver (started before the prefix is made, so wineboot uses it too): each process
# then starts in ~0.05 s instead of ~0.6 s.
wineserver -p
wineboot -i >/dev/null 2>&1
cp "$dll" "$WINEPREFIX/drive_c/windows/system32/"

wine() { command wine "$@" 2> >(grep -v -e 'wine32 is missing' -e 'multiarch needs' -e 'dpkg --add-arch' -e 'apt-get install wine32' >&2); }

# The helper binary itself, through the protocol: it starts, stores, reads back and erases.
exe="${CARGO_TARGET_DIR:-target}/$target/debug/docker-credential-keyring.exe"
key="https://smoke-$$.regkit.test"
printf '{"ServerURL":"%s","Username":"smoke","Secret":"s3cr3t"}' "$key" | wine "$exe" store
got="$(printf '%s' "$key" | wine "$exe" get)"
[ "$got" = "{\"ServerURL\":\"$key\",\"Username\":\"smoke\",\"Secret\":\"s3cr3t\"}" ] || {
  echo "wine-test: get answered: $got" >&2
  exit 1
}
printf '%s' "$key" | wine "$exe" erase
if printf '%s' "$key" | wine "$exe" get >/dev/null; then
  echo "wine-test: get still finds $key after erase" >&2
  exit 1
fi

REGKIT_WINCRED_PEER="$(command wine winepath -w "$(cd "$peers" && pwd)/docker-credential-wincred.exe" 2>/dev/null)"
export REGKIT_WINCRED_PEER
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
# --nocapture: each check Wine cannot make says so in the output.
cargo test --locked --target "$target" -p regkit --features keyring --lib keyring:: "$@" -- --nocapture
