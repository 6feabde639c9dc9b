#!/bin/sh
# make compose-demo: bring the compose testnet up, carry a checksummed TCP transfer between the
# AP-addresses of two containers (over the paths the nodes built by themselves), take it down.
#   COMPOSE                the compose command (default: docker compose if it answers, else
#                          docker-compose); make compose-demo-v2 gives Compose v2
#   PHANTOM_DEMO_PROJECT   the compose project name (default phantom-demo)
#   DOCKER_BUILD_FLAGS     extra flags for docker build (the Makefile gives --network host)
#   PHANTOM_DEMO_MIB       MiB to send (default 4)
set -eu
cd "$(dirname "$0")/.."
demo=compose-demo
. docker/demo-lib.sh
project="${PHANTOM_DEMO_PROJECT:-phantom-demo}"
mib="${PHANTOM_DEMO_MIB:-4}"
compose="${COMPOSE:-}"
if [ -z "$compose" ]; then
    if docker compose version >/dev/null 2>&1; then
        compose="docker compose"
    elif command -v docker-compose >/dev/null 2>&1; then
        compose="docker-compose"
    else
        say "neither docker compose nor docker-compose is installed" >&2
        exit 2
    fi
fi
errors=$(mktemp)
c() {
    # Compose v1 warns, on every command, that it ignores endpoint_mode (which is for Swarm).
    status=0
    $compose -p "$project" -f docker/compose.yml "$@" 2>"$errors" || status=$?
    grep -v "deploy sub-keys are not supported" "$errors" >&2 || true
    return "$status"
}
containers() { c ps -q; }
down() { c down -v --remove-orphans >/dev/null 2>&1 || true; }
trap 'down; rm -f "$errors"' EXIT

say "building the image; compose is $compose ($($compose version --short 2>/dev/null || $compose version | head -n 1))"
# shellcheck disable=SC2086
docker build ${DOCKER_BUILD_FLAGS:-} -q -t phantom -f docker/Dockerfile . >/dev/null
down
say "bringing up 12 nodes (project $project)"
c up -d --no-build --scale peer=11 >/dev/null 2>&1
waitHealthy 12 180 || { c ps; exit 1; }
transfer "$(c ps -q peer | sed -n 2p)" "$(c ps -q peer | sed -n 9p)" "$mib"
say "taking it down"
down
trap - EXIT
rm -f "$errors"
say "done"
