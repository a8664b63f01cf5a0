# regkit — build, test, install, benchmark and package.
# `make demo` and `make test` are the two commands a newcomer needs (see README.md).

PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
DESTDIR   ?=
CARGO     ?= cargo
BINARIES  := regkit docker-credential-keyring docker-credential-env docker-credential-ecr-login regkit-ecr-token docker-credential-acr docker-credential-gcr docker-credential-regkit
MANDIR    ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
# Where cargo puts release binaries (CI moves the target dir with CARGO_TARGET_DIR).
RELEASE   = $(or $(CARGO_TARGET_DIR),target)/release
# Man pages and completions generated from regkit's own clap definition (`regkit generate`, hidden).
GENERATED := build/generated

# The keyring helper's Windows and macOS backends, type-checked and linted from Linux (nothing links for
# macOS here; Windows also runs under Wine in `make test`, scripts/wine-test.sh). The Windows tests are
# linted too; the macOS targets skip test code (it is the Linux-tested docker_entry.rs) to save their
# dev-dependency builds.
APPLE_TARGETS := aarch64-apple-darwin x86_64-apple-darwin
CROSS_CHECKED := -p regkit -p docker-credential-keyring --features regkit/keyring

.PHONY: all build deps test lint demo install uninstall bench clean generated deb deb-check fuzz

all: build

build:
	$(CARGO) build --workspace --release --locked

deps:
	./scripts/install-deps.sh

# The whole suite: unit tests, then end-to-end tests against real components on loopback. Every component
# is installed first when missing; a missing one fails the run, it is never skipped.
test: deps
	./scripts/fetch-specs.sh
	$(CARGO) build --workspace --bins --locked
	$(CARGO) test --workspace --locked --no-fail-fast
	./scripts/wine-test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	node scripts/lint-workflows.mjs
	$(CARGO) clippy --target x86_64-pc-windows-gnu $(CROSS_CHECKED) --all-targets --locked -- -D warnings
	for target in $(APPLE_TARGETS); do $(CARGO) clippy --target $$target $(CROSS_CHECKED) --locked -- -D warnings || exit 1; done

# The property tests over every untrusted-input parser (shared/src/fuzz_tests.rs, and the `fuzz_`-named
# ones beside private parsers such as the keyring's D-Bus decoder), run long: the normal suite runs 256
# cases of each. Override with `make fuzz FUZZ_CASES=…`.
FUZZ_CASES ?= 200000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p regkit --all-features --locked --lib fuzz_

# Starts a throwaway registry on 127.0.0.1, pushes a few images and shows what `regkit` does with them.
demo: deps
	$(CARGO) build --workspace --bins --locked
	$(CARGO) run --quiet --locked -p regkit-e2e --bin regkit-demo

# Release builds of everything, peers measured in the same run; writes BENCHMARKS.md.
bench: deps
	$(CARGO) build --workspace --release --bins --locked
	$(CARGO) run --release --locked -p regkit-e2e --bin regkit-bench -- BENCHMARKS.md

# Only the shipped binaries: packaging must not depend on the test harness compiling.
generated:
	$(CARGO) build --release --locked $(addprefix --bin ,$(BINARIES))
	rm -rf $(GENERATED)
	$(RELEASE)/regkit generate man $(GENERATED)/man
	for shell in bash zsh fish; do $(RELEASE)/regkit generate completions $$shell $(GENERATED)/completions; done

# Binaries, man pages (regkit's generated, the helpers' from packaging/man) and bash/zsh/fish completions.
install: generated
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	for bin in $(BINARIES); do install -m 0755 $(RELEASE)/$$bin $(DESTDIR)$(BINDIR)/$$bin; done
	install -m 0644 $(GENERATED)/man/*.1 packaging/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(GENERATED)/completions/regkit $(DESTDIR)$(BASHCOMPDIR)/regkit
	install -m 0644 $(GENERATED)/completions/_regkit $(DESTDIR)$(ZSHCOMPDIR)/_regkit
	install -m 0644 $(GENERATED)/completions/regkit.fish $(DESTDIR)$(FISHCOMPDIR)/regkit.fish

uninstall:
	for bin in $(BINARIES); do rm -f $(DESTDIR)$(BINDIR)/$$bin; done
	rm -f $(DESTDIR)$(MANDIR)/man1/regkit.1 $(DESTDIR)$(MANDIR)/man1/regkit-*.1 $(DESTDIR)$(MANDIR)/man1/docker-credential-*.1
	rm -f $(DESTDIR)$(BASHCOMPDIR)/regkit $(DESTDIR)$(ZSHCOMPDIR)/_regkit $(DESTDIR)$(FISHCOMPDIR)/regkit.fish

# build/regkit_<version>_<arch>.deb with dpkg-deb (packaging/deb/build.sh); needs dpkg-dev, nothing from cargo.
deb: generated
	./packaging/deb/build.sh

# Builds the .deb, installs it with dpkg -i (as root), smoke-tests the installed files, and restores the
# machine's packages. Run by CI, never by `cargo test`.
deb-check: deb
	./packaging/deb/check.sh

clean:
	$(CARGO) clean
