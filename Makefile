# Switchyard: `make run` shows the balancer on a bundled capture; `make test` runs every test.
# Both work on a fresh Debian 12 machine with the Swift toolchain: they install what they need.

SWIFT      ?= swift
PYTHON     ?= /usr/bin/python3
BIN        := .build/release/switchyard
DEMO_DIR   := .build/demo
APT_PKGS   := dpdk dpdk-dev libdpdk-dev libnuma-dev libpcap-dev pkg-config tshark \
              python3-scapy python3-pytest python3-matplotlib valgrind iproute2 ethtool procps \
              nginx curl wrk haproxy nftables iputils-ping

export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: all deps build test unit integration run bench clean

all: build

# Idempotent: only calls apt-get when a package is missing. Services the
# packages bring (nginx, haproxy) are not started by the install: the tests
# start their own instances in namespaces.
deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; fi; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
	  if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  [ $$rc -eq 0 ] || exit 1; \
	else echo "make deps: all packages present"; fi

build: deps
	$(SWIFT) build -c release

unit: deps
	$(SWIFT) test --disable-swift-testing

integration: build
	$(PYTHON) -m pytest -q Tests/Integration

test: deps build unit integration

# The main job: balance a bundled capture with the demo rules and show where the packets went.
run: build
	@mkdir -p $(DEMO_DIR)
	$(PYTHON) Tests/Integration/demo.py $(DEMO_DIR)
	$(BIN) -l 0 --no-huge -m 512 --no-pci --no-shconf --no-telemetry --log-level=lib.eal:error \
	  --vdev 'net_pcap0,rx_pcap=$(DEMO_DIR)/in.pcap,tx_pcap=$(DEMO_DIR)/out.pcap' -- \
	  --config Tests/Integration/fixtures/demo.rules \
	  --port-addr 0:10.0.0.1/24 --port-addr 0:198.51.100.2/24 --route 0.0.0.0/0=198.51.100.1 \
	  --neigh 10.0.0.11=02:00:00:00:01:0b --neigh 10.0.0.12=02:00:00:00:01:0c \
	  --neigh 10.0.0.13=02:00:00:00:01:0d --neigh 10.0.0.21=02:00:00:00:01:15 \
	  --neigh 10.0.0.22=02:00:00:00:01:16 --neigh 198.51.100.1=02:00:00:00:00:fe \
	  --clock packet --exit-on-idle 300 --dump-on-exit > $(DEMO_DIR)/run.log
	$(PYTHON) Tests/Integration/demo.py --summary $(DEMO_DIR)

bench: build
	$(PYTHON) Benchmarks/bench.py $(BENCH_ARGS)
	$(PYTHON) Benchmarks/e2e_compare.py $(E2E_ARGS)

clean:
	rm -rf .build
