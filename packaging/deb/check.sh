#!/usr/bin/env bash
# CI check of the .deb (`make deb-check`): installs build/regkit_<version>_<arch>.deb with dpkg -i, runs the
# installed files (versions, man pages, completions, a docker login round trip through
# /usr/bin/docker-credential-keyring, regkit configure and doctor), then removes it and puts back the
# package it replaced. Needs root (or sudo). Never run from `cargo test`: a test must not install packages.
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
deb="build/regkit_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "deb-check: $deb is missing: run make deb" >&2; exit 1; }
fail() { echo "deb-check: $*" >&2; exit 1; }

for field in Conflicts Replaces; do
  dpkg-deb -f "$deb" "$field" | grep -qw amazon-ecr-credential-helper ||
    fail "$field does not name amazon-ecr-credential-helper"
done
if command -v lintian >/dev/null 2>&1; then
  # Errors fail the check; warnings (no upstream signing key, no Debian source) are shown only.
  lintian --fail-on error "$deb"
fi

work="$(mktemp -d)"
registry_pid=""
restore_ecr=""
cleanup() {
  [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
  $sudo dpkg --purge regkit >/dev/null 2>&1 || true
  if [ -n "$restore_ecr" ]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends amazon-ecr-credential-helper >/dev/null ||
      echo "deb-check: could not reinstall amazon-ecr-credential-helper" >&2
  fi
}
trap cleanup EXIT

# The package replaces Debian's ECR helper (same /usr/bin path). With Conflicts + Replaces, dpkg -i removes
# it in favour of regkit (Debian Policy 7.6.2); the trap reinstalls it afterwards.
if dpkg-query -W -f='${Status}' amazon-ecr-credential-helper 2>/dev/null | grep -q 'ok installed'; then
  restore_ecr=1
fi
$sudo dpkg -i "$deb" >/dev/null
if dpkg-query -W -f='${Status}' amazon-ecr-credential-helper 2>/dev/null | grep -q 'ok installed'; then
  fail "amazon-ecr-credential-helper is still installed beside regkit"
fi

# The installed files, not the build tree. The docker CLI is the one client not from this package: keep the
# one on the caller's PATH (Debian's docker.io, or a docker installed under /usr/local/bin).
docker_cli="$(command -v docker)" || fail "the docker CLI is not on PATH: run make deps"
export PATH="/usr/bin:/bin:$(dirname "$docker_cli")"
[ "$(/usr/bin/regkit --version)" = "regkit ${version}" ] || fail "regkit --version: $(/usr/bin/regkit --version)"
for helper in /usr/bin/docker-credential-{keyring,env,ecr-login,acr,gcr}; do
  [ "$(dpkg -S "$helper" | cut -d: -f1)" = regkit ] || fail "$helper does not belong to the regkit package"
  "$helper" version | grep -q "$version" || fail "$helper version: $("$helper" version)"
done
for page in regkit regkit-configure regkit-doctor regkit-ci-env docker-credential-{keyring,env,ecr-login,acr,gcr}; do
  [ -s "/usr/share/man/man1/$page.1.gz" ] || fail "man page $page is missing"
  man --warnings -l "/usr/share/man/man1/$page.1.gz" 2>"$work/man.err" >/dev/null
  [ ! -s "$work/man.err" ] || fail "man page $page: $(cat "$work/man.err")"
done
for completion in /usr/share/bash-completion/completions/regkit /usr/share/zsh/vendor-completions/_regkit \
  /usr/share/fish/vendor_completions.d/regkit.fish; do
  grep -q "ci-env" "$completion" || fail "$completion does not complete regkit's subcommands"
done
bash -c 'source /usr/share/bash-completion/completions/regkit && complete -p regkit' >/dev/null ||
  fail "the bash completion does not load"

# docker login round trip against a throwaway htpasswd registry on loopback, through the installed helper.
htpasswd -Bbn smoke s3cret-smoke >"$work/htpasswd"
cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: info, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:0, secret: deb-check}
auth: {htpasswd: {realm: deb-check, path: $work/htpasswd}}
YAML
docker-registry serve "$work/registry.yml" 2>"$work/registry.log" &
registry_pid=$!
host=""
for _ in $(seq 100); do
  host="$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$work/registry.log" | head -n1)"
  [ -n "$host" ] && break
  sleep 0.1
done
[ -n "$host" ] || fail "docker-registry did not start: $(cat "$work/registry.log")"

export HOME="$work/home" XDG_DATA_HOME="$work/home/data" DOCKER_CONFIG="$work/docker"
mkdir -p "$HOME"
dbus-run-session -- bash -euo pipefail -c '
  eval "$(printf pw | gnome-keyring-daemon --unlock --components=secrets)"
  host=$1
  regkit configure --registry "$host" --helper keyring
  printf s3cret-smoke | docker login "$host" -u smoke --password-stdin
  docker-credential-keyring list | grep -q "\"$host\":\"smoke\""
  grep -q s3cret-smoke "$DOCKER_CONFIG/config.json" && { echo "the password reached config.json" >&2; exit 1; }
  # An empty image from an OCI layout, pushed by skopeo with the credentials the helper returns on get.
  layout="$HOME/oci"
  mkdir -p "$layout/blobs/sha256"
  blob() { local digest; digest="$(printf %s "$1" | sha256sum | cut -d" " -f1)"; printf %s "$1" >"$layout/blobs/sha256/$digest"; echo "$digest"; }
  config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}"
  config_digest="$(blob "$config")"
  manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":${#config}},\"layers\":[]}"
  manifest_digest="$(blob "$manifest")"
  printf %s "{\"imageLayoutVersion\":\"1.0.0\"}" >"$layout/oci-layout"
  printf %s "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_digest\",\"size\":${#manifest},\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}}]}" >"$layout/index.json"
  skopeo copy --quiet --dest-tls-verify=false "oci:$layout:v1" "docker://$host/smoke/app:v1"
  regkit doctor "$host/smoke/app" >"$HOME/doctor.txt" || { cat "$HOME/doctor.txt" >&2; exit 1; }
  grep -q "credential helper docker-credential-keyring" "$HOME/doctor.txt"
  grep -q "^delete rights: *ok" "$HOME/doctor.txt"
  docker logout "$host"
  [ "$(docker-credential-keyring list)" = "{}" ]
' deb-check "$host" || fail "the docker login round trip through the installed files failed"
echo "deb-check: $deb installs, runs and round-trips a docker login"
