# Thin wrappers so that a new user, a developer and CI run the same commands.
SHELL := /bin/bash
SSHD ?= /usr/sbin/sshd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= $(CURDIR)/target/demo-lab
DEMO_HOSTS ?= 6

.PHONY: deps build demo test test-faults fuzz fuzz-replay check ci bench snapshots doc clean-lab

NGINX ?= /usr/sbin/nginx

## deps: install what the tests need (OpenSSH server for the loopback lab's hosts, nginx for
## its sites' web server, curl for the HTTP checks fleet runs on the hosts, sudo for become,
## Chromium to render the HTML run report headless; the lab's login users fleet-op and
## fleet-np are made by the tests, see `fleet-lab users`)
deps:
	@missing=""; \
	[ -x $(SSHD) ] || missing="$$missing openssh-server"; \
	[ -x $(NGINX) ] || missing="$$missing nginx"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	[ -x /usr/bin/sudo ] || missing="$$missing sudo"; \
	[ -x /usr/bin/doas ] || missing="$$missing opendoas"; \
	command -v ps >/dev/null || missing="$$missing procps"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (the lab's sshd hosts, web server, HTTP checks, ssh -G as the ssh_config oracle, sudo and doas for become, ps for the tests' checks, chromium for the HTML report's)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  case "$$missing" in *nginx*) \
	    echo "stopping the nginx service the package may have started (the lab runs its own)"; \
	    $(SUDO) $(NGINX) -s quit 2>/dev/null || true ;; \
	  esac; \
	fi

build:
	cargo build --workspace --bins

## demo: start a lab of 6 real sshd hosts with CiviCRM sites served by nginx, run fleet exec
## and a rolling fleet upgrade (canary, then the rest), show the journal, then a major Drupal
## upgrade with fleet migrate of the even hosts (plan, build, import, release, one site rolled
## back, h02 cleaned up), stop the lab
demo: deps build
	@set -euo pipefail; \
	dir=$(DEMO_DIR); \
	if [ -e "$$dir/lab.toml" ]; then target/debug/fleet-lab down --dir "$$dir" >/dev/null 2>&1 || true; fi; \
	rm -rf "$$dir"; \
	target/debug/fleet-lab up --hosts $(DEMO_HOSTS) --dir "$$dir" --sites-per-host 2 --civicrm 5.69.0 --web; \
	trap 'target/debug/fleet-lab down --dir "$$dir"' EXIT; \
	inv="$$dir/inventory.toml"; state="$$dir/state"; \
	echo; echo "\$$ fleet -i $$inv hosts"; \
	target/debug/fleet -i "$$inv" hosts; \
	echo; echo "\$$ fleet -i $$inv exec -- 'uname -sr'"; \
	target/debug/fleet -i "$$inv" exec -- 'uname -sr'; \
	echo; echo "\$$ fleet -i $$inv exec -l odd --json -- 'echo \$$FLEET_HOST'"; \
	target/debug/fleet -i "$$inv" exec -l odd --json -- 'echo $$FLEET_HOST'; \
	echo; echo "\$$ fleet -i $$inv upgrade --tarball $$dir/civicrm-5.70.0-drupal.tar.gz --plan"; \
	target/debug/fleet -i "$$inv" --state-dir "$$state" upgrade --tarball "$$dir/civicrm-5.70.0-drupal.tar.gz" --plan; \
	echo; echo "\$$ fleet -i $$inv upgrade --tarball $$dir/civicrm-5.70.0-drupal.tar.gz --batches 1,100%"; \
	target/debug/fleet -i "$$inv" --state-dir "$$state" upgrade --tarball "$$dir/civicrm-5.70.0-drupal.tar.gz" --batches 1,100%; \
	run=$$(target/debug/fleet --state-dir "$$state" runs | awk 'NR==2 {print $$1}'); \
	echo; echo "\$$ fleet runs show $$run"; \
	target/debug/fleet --state-dir "$$state" runs show "$$run"; \
	m="$$dir/migrate.toml"; \
	echo; echo "\$$ fleet -i $$inv migrate plan --manifest $$m -l h01,h02"; \
	target/debug/fleet -i "$$inv" --state-dir "$$state" migrate plan --manifest "$$m" -l h01,h02; \
	echo; echo "# the odd hosts' sites share one CiviCRM database, which fleet migrate does not split: the even hosts move"; \
	echo "\$$ fleet -i $$inv migrate build --manifest $$m -l even"; \
	target/debug/fleet -i "$$inv" --state-dir "$$state" migrate build --manifest "$$m" -l even; \
	mrun=$$(target/debug/fleet --state-dir "$$state" runs | awk 'NR==2 {print $$1}'); \
	echo; echo "\$$ fleet -i $$inv migrate import $$mrun"; \
	target/debug/fleet -i "$$inv" --state-dir "$$state" migrate import "$$mrun"; \
	echo; echo "\$$ fleet -i $$inv migrate release $$mrun --batches 1,100%"; \
	target/debug/fleet -i "$$inv" --state-dir "$$state" migrate release "$$mrun" --batches 1,100%; \
	addr=$$(awk -F'"' '/^address = / {n++; if (n == 2) {print $$2; exit}}' "$$dir/lab.toml"); \
	echo; echo "\$$ curl -s -H 'Host: site1.h02.test' http://$$addr:8080/"; \
	curl -s -H 'Host: site1.h02.test' "http://$$addr:8080/"; \
	echo; echo "\$$ fleet -i $$inv migrate rollback $$mrun --site h02/site1"; \
	target/debug/fleet -i "$$inv" --state-dir "$$state" migrate rollback "$$mrun" --site h02/site1; \
	echo; echo "\$$ curl -s -H 'Host: site1.h02.test' http://$$addr:8080/"; \
	curl -s -H 'Host: site1.h02.test' "http://$$addr:8080/"; \
	echo; echo "\$$ fleet -i $$inv migrate cleanup $$mrun --older-than 0s --site h02/site1 --site h02/site2"; \
	target/debug/fleet -i "$$inv" --state-dir "$$state" migrate cleanup "$$mrun" --older-than 0s --site h02/site1 --site h02/site2; \
	echo; echo "\$$ curl -s -H 'Host: site2.h02.test' http://$$addr:8080/"; \
	curl -s -H 'Host: site2.h02.test' "http://$$addr:8080/"

## test: the whole suite against real sshd hosts on 127.0.0.0/8 (the fault suite aside)
test: deps
	@if command -v cargo-nextest >/dev/null; then \
	  cargo nextest run --workspace --no-fail-fast -E 'not test(/^faults::/)'; \
	else \
	  cargo test --workspace --no-fail-fast -- --skip faults::; \
	fi
	cargo test --doc --workspace

FAULT_FIGURES := $(CURDIR)/target/fault-figures

## test-faults: the fault suite (controller killed at seeded journal writes, hosts and
## networks failing, hostile input, load), then its figures table; FLEET_FAULT_SEED=N
## draws other kill points
test-faults: deps
	@rm -rf $(FAULT_FIGURES); rc=0; \
	if command -v cargo-nextest >/dev/null; then \
	  FLEET_FAULT_FIGURES=$(FAULT_FIGURES) cargo nextest run --test it --no-fail-fast -E 'test(/^faults::/)' || rc=$$?; \
	else \
	  FLEET_FAULT_FIGURES=$(FAULT_FIGURES) cargo test --test it --no-fail-fast -- faults:: || rc=$$?; \
	fi; \
	bash tests/it/faults/figures.sh $(FAULT_FIGURES) || rc=$$?; \
	exit $$rc

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := inventory_toml host_range selector ansible_ini ansible_yaml playbook manifest known_hosts ssh_config

## fuzz: each cargo fuzz target of fuzz/ (one per parser) for FUZZ_SECONDS (default 30),
## starting from fuzz/seeds/TARGET; a crash stops it with its input in fuzz/artifacts/TARGET.
## On the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo fuzz pass its -Z flags, and
## `-s none` runs without a sanitizer (ASan needs a nightly std); -a keeps overflow checks.
## An input is a hang after 60 s: an instrumented build loading a 100,000-host range on a
## busy machine takes over 10
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	@set -e; cd fuzz; for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t; \
	  echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -O -a $$t corpus/$$t seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=60 -rss_limit_mb=2048 -print_final_stats=1; \
	done

## fuzz-replay: the fuzz targets' checks over their seeds and corpus without libFuzzer (one
## crash: `cd fuzz && cargo run --features replay --bin replay -- TARGET FILE`)
fuzz-replay:
	@set -e; cd fuzz; for t in $(FUZZ_TARGETS); do \
	  cargo run -q --features replay --bin replay -- $$t seeds/$$t $$( [ -d corpus/$$t ] && echo corpus/$$t ); \
	done

## bench: fleet exec vs pssh, pdsh and clush on 50, 200 and 500 lab hosts, and the upgrade
## controller's cost; writes bench/results/ (installs the peers from Debian's packages)
bench: deps
	python3 bench/bench.py

check:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

ci: deps check test test-faults

snapshots:
	cargo insta review

doc:
	cargo doc --workspace --no-deps
