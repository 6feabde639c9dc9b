#!/bin/sh
# make compose-demo: bring the compose testnet up, carry a checksummed TCP transfer between the
# AP-addresses of two containers (over the paths the nodes built by themselves), take it down.
#   PHANTOM_DEMO_PROJECT   the compose project name (default phantom-demo)
#   DOCKER_BUILD_FLAGS     extra flags for docker build (the Makefile gives --network host)
#   PHANTOM_DEMO_MIB       MiB to send (default 4)
set -eu
cd "$(dirname "$0")/.."
project="${PHANTOM_DEMO_PROJECT:-phantom-demo}"
mib="${PHANTOM_DEMO_MIB:-4}"
if docker compose version >/dev/null 2>&1; then
    compose="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
    compose="docker-compose"
else
    echo "compose-demo: neither docker compose nor docker-compose is installed" >&2
    exit 2
fi
c() { $compose -p "$project" -f docker/compose.yml "$@"; }
say() { echo "compose-demo: $*"; }
down() { c down -v --remove-orphans >/dev/null 2>&1 || true; }
trap down EXIT

say "building the image; compose is $compose"
# shellcheck disable=SC2086
docker build ${DOCKER_BUILD_FLAGS:-} -q -t phantom -f docker/Dockerfile . >/dev/null
down
say "bringing up 12 nodes (project $project)"
c up -d --no-build --scale peer=11 >/dev/null 2>&1

ids=$(c ps -q)
deadline=$(( $(date +%s) + 180 ))
while :; do
    healthy=$(docker inspect -f '{{.State.Health.Status}}' $ids | grep -c '^healthy$' || true)
    [ "$healthy" -eq 12 ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "only $healthy of 12 containers healthy after 180 s"; c ps; exit 1
    fi
    sleep 2
done
say "12 of 12 containers healthy"

server=$(c ps -q peer | sed -n 2p)
client=$(c ps -q peer | sed -n 9p)
ctl() { docker exec -u phantom "$1" phantomctl --node /var/lib/phantom "$2" --json; }
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
waitKept() {
    # $1 container, $2 kind: until the node says the path of that kind it keeps is built
    until ctl "$1" status | python3 -c "import json, sys; s = json.load(sys.stdin); sys.exit(0 if [k for k in s['kept_paths'] if k['kind'] == '$2' and k['built']] else 1)"; do
        [ "$(date +%s)" -lt "$deadline" ] || { say "no $2 path on $1"; ctl "$1" status; exit 1; }
        sleep 2
    done
}
deadline=$(( $(date +%s) + 120 ))
waitKept "$server" entry
waitKept "$client" exit
serverAp=$(ctl "$server" status | field '["ap_address"]')
clientAp=$(ctl "$client" status | field '["ap_address"]')
say "server $(docker inspect -f '{{.Name}}' "$server" | tr -d /) at $serverAp (entry path built by itself)"
say "client $(docker inspect -f '{{.Name}}' "$client" | tr -d /) at $clientAp (exit path built by itself)"

sinkOut=$(mktemp)
docker exec "$server" python3 -m phantom.testnet.probe sink "$serverAp" 5001 >"$sinkOut" &
sinkPid=$!
until grep -q listening "$sinkOut"; do sleep 0.2; done
sent=$(docker exec "$client" python3 -m phantom.testnet.probe send "$serverAp" 5001 "$mib" | tail -n 1)
wait "$sinkPid"
received=$(tail -n 1 "$sinkOut")
rm -f "$sinkOut"
python3 - "$sent" "$received" "$clientAp" <<'PY'
import json, sys
sent, received, clientAp = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
ok = sent["sha256"] == received["sha256"] and sent["bytes"] == received["bytes"]
print(f"compose-demo: TCP {sent['bytes'] / (1 << 20):.0f} MiB in {sent['seconds']:.2f} s "
      f"({sent['bytes'] / (1 << 20) / sent['seconds']:.1f} MiB/s), sha256 {sent['sha256'][:16]}... "
      + ("checksums match" if ok else f"CHECKSUMS DIFFER ({received['sha256'][:16]}...)"))
print(f"compose-demo: the server saw the client as {received['from']}" + (" (its AP-address)" if received["from"] == clientAp else ""))
sys.exit(0 if ok else 1)
PY
say "taking it down"
down
trap - EXIT
say "done"
