# regkit — build, test, install, benchmark and package.
# `make demo` and `make test` are the two commands a newcomer needs (see README.md).

PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
DESTDIR   ?=
CARGO     ?= cargo
BINARIES  := regkit docker-credential-keyring docker-credential-env docker-credential-ecr-login

.PHONY: all build deps test lint demo install uninstall bench clean

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Starts a throwaway registry on 127.0.0.1, pushes a few images and shows what `regkit` does with them.
demo: deps
	$(CARGO) build --workspace --bins --locked
	$(CARGO) run --quiet --locked -p regkit-e2e --bin regkit-demo

# Release builds of everything, peers measured in the same run; writes BENCHMARKS.md.
bench: deps
	$(CARGO) build --workspace --release --bins --locked
	$(CARGO) run --release --locked -p regkit-e2e --bin regkit-bench -- BENCHMARKS.md

install: build
	install -d $(DESTDIR)$(BINDIR)
	for bin in $(BINARIES); do install -m 0755 target/release/$$bin $(DESTDIR)$(BINDIR)/$$bin; done

uninstall:
	for bin in $(BINARIES); do rm -f $(DESTDIR)$(BINDIR)/$$bin; done

clean:
	$(CARGO) clean
