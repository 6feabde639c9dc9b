#!/bin/sh
# make swarm-demo: deploy docker/compose.yml as a Docker Swarm stack (on this engine, made a
# one-node swarm if it is in none), carry a checksummed TCP transfer between the AP-addresses of
# two of its containers, remove the stack, and leave the swarm if this script made it.
#   PHANTOM_DEMO_STACK       the stack name (default phantom-swarm-demo)
#   PHANTOM_SWARM_ADVERTISE  --advertise-addr for docker swarm init (default: Docker's choice)
#   DOCKER_BUILD_FLAGS       extra flags for docker build (the Makefile gives --network host)
#   PHANTOM_DEMO_MIB         MiB to send (default 4)
set -eu
cd "$(dirname "$0")/.."
demo=swarm-demo
. docker/demo-lib.sh
stack="${PHANTOM_DEMO_STACK:-phantom-swarm-demo}"
mib="${PHANTOM_DEMO_MIB:-4}"
containers() { docker ps -q -f "label=com.docker.stack.namespace=$stack"; }
peers() { docker ps -q -f "label=com.docker.swarm.service.name=${stack}_peer" | sort; }
gone() { [ -z "$(containers)" ] && ! docker network inspect "${stack}_default" >/dev/null 2>&1; }
remove() {
    docker stack rm "$stack" >/dev/null 2>&1 || true
    # The stack's containers and network go after docker stack rm returns.
    tries=0
    until gone || [ "$tries" -ge 60 ]; do sleep 1; tries=$((tries + 1)); done
}
madeSwarm=
hadGwbridge=
down() {
    remove
    if [ -n "$madeSwarm" ]; then
        docker swarm leave --force >/dev/null 2>&1 || true
        [ -n "$hadGwbridge" ] || docker network rm docker_gwbridge >/dev/null 2>&1 || true
    fi
}

case "$(docker info -f '{{.Swarm.LocalNodeState}}/{{.Swarm.ControlAvailable}}')" in
    active/true) say "this engine is a manager of a swarm already: the stack goes there" ;;
    active/*) say "this engine is a swarm worker: run the demo on a manager" >&2; exit 2 ;;
    *)
        # Joining a swarm makes the bridge docker_gwbridge, which leaving keeps.
        hadGwbridge=$(docker network ls -q -f name=^docker_gwbridge$)
        # shellcheck disable=SC2086
        docker swarm init ${PHANTOM_SWARM_ADVERTISE:+--advertise-addr "$PHANTOM_SWARM_ADVERTISE"} >/dev/null
        madeSwarm=yes
        say "made this engine a one-node swarm (left again at the end)"
        ;;
esac
trap down EXIT

say "building the image; engine $(docker version -f '{{.Server.Version}}')"
# shellcheck disable=SC2086
docker build ${DOCKER_BUILD_FLAGS:-} -q -t phantom -f docker/Dockerfile . >/dev/null
remove
say "deploying docker/compose.yml as stack $stack"
deployed=$(docker stack deploy -c docker/compose.yml "$stack" 2>&1) || { echo "$deployed" >&2; exit 1; }
echo "$deployed" | sed -n "s/^Ignoring/$demo: docker stack deploy: ignoring/p"
waitHealthy 12 240 || { docker stack ps "$stack"; exit 1; }
say "$(docker service ls -f "label=com.docker.stack.namespace=$stack" --format '{{.Name}} {{.Replicas}}' | tr '\n' ' ')"
transfer "$(peers | sed -n 2p)" "$(peers | sed -n 9p)" "$mib"
say "removing the stack"
down
trap - EXIT
say "done"
