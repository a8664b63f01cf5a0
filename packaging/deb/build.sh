#!/usr/bin/env bash
# Builds build/regkit_<version>_<arch>.deb with dpkg-deb from `make install` into a staging root.
# Called by `make deb` after the release build; needs dpkg-dev (dpkg-shlibdeps) and nothing from cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
arch="$(dpkg --print-architecture)"
[ -n "$version" ] || { echo "deb: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }
# The changelog's newest entry must name the version being packaged.
head -n1 packaging/deb/changelog | grep -q "(${version})" ||
  { echo "deb: packaging/deb/changelog has no entry for ${version}: add one" >&2; exit 1; }

out="build/regkit_${version}_${arch}.deb"
root="build/deb/root"
rm -rf build/deb "$out"
mkdir -p "$root/DEBIAN"

# Debian's zsh reads vendor completions from vendor-completions, not site-functions.
make --no-print-directory install DESTDIR="$PWD/$root" PREFIX=/usr \
  ZSHCOMPDIR=/usr/share/zsh/vendor-completions >/dev/null

doc="$root/usr/share/doc/regkit"
install -d "$doc"
install -m 0644 packaging/deb/copyright "$doc/copyright"
gzip -9n -c packaging/deb/changelog >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
gzip -9n "$root"/usr/share/man/man1/*.1

# Shared-library dependencies as Debian computes them; dpkg-shlibdeps wants a debian/control to read.
shlib_dir="build/deb/shlibs"
mkdir -p "$shlib_dir/debian"
printf 'Source: regkit\n\nPackage: regkit\nArchitecture: any\n' >"$shlib_dir/debian/control"
binaries=()
for bin in "$root"/usr/bin/*; do binaries+=("$PWD/$bin"); done
depends="$(cd "$shlib_dir" && dpkg-shlibdeps -O "${binaries[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[ -n "$depends" ] || { echo "deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s/@VERSION@/${version}/" -e "s/@ARCH@/${arch}/" -e "s/@SIZE@/${size}/" -e "s/@DEPENDS@/${depends}/" \
  packaging/deb/control.in >"$root/DEBIAN/control"
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
