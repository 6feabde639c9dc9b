# What make compose-demo and make swarm-demo share (sourced, POSIX sh): waiting until the nodes
# are healthy and have built their paths, and a checksummed TCP transfer between the
# AP-addresses of two containers. The caller sets $demo (its name, for messages) and defines
# containers(), which prints the ids of the testnet's running containers.

say() { echo "$demo: $*"; }

# waitHealthy N SECONDS: until N of the testnet's containers are healthy.
waitHealthy() {
    deadline=$(( $(date +%s) + $2 ))
    while :; do
        ids=$(containers)
        healthy=0
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            healthy=$(docker inspect -f '{{.State.Health.Status}}' $ids 2>/dev/null | grep -c '^healthy$' || true)
        fi
        [ "$healthy" -ge "$1" ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "only $healthy of $1 containers healthy after $2 s"
            return 1
        fi
        sleep 2
    done
    say "$1 of $1 containers healthy"
}

ctl() { docker exec -u phantom "$1" phantomctl --node /var/lib/phantom "$2" --json; }
field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
# A container's name without the task id Swarm appends (phantom_peer.3.<id>).
nameOf() { docker inspect -f '{{.Name}}' "$1" | tr -d / | sed 's/\.[a-z0-9]\{25\}$//'; }

# waitKept CONTAINER KIND: until the node says the path of that kind it keeps is built.
waitKept() {
    until ctl "$1" status | python3 -c "import json, sys; s = json.load(sys.stdin); sys.exit(0 if [k for k in s['kept_paths'] if k['kind'] == '$2' and k['built']] else 1)"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "no $2 path on $(nameOf "$1")"
            ctl "$1" status
            return 1
        fi
        sleep 2
    done
}

# transfer SERVER CLIENT MIB: once the server has its entry path and the client its exit path
# (built by the nodes themselves), MIB MiB over TCP from the client to the server's AP-address,
# SHA-256 on both ends; fails unless the checksums match.
transfer() {
    deadline=$(( $(date +%s) + 120 ))
    waitKept "$1" entry
    waitKept "$2" exit
    serverAp=$(ctl "$1" status | field '["ap_address"]')
    clientAp=$(ctl "$2" status | field '["ap_address"]')
    say "server $(nameOf "$1") at $serverAp (entry path built by itself)"
    say "client $(nameOf "$2") at $clientAp (exit path built by itself)"
    sinkOut=$(mktemp)
    docker exec "$1" python3 -m phantom.testnet.probe sink "$serverAp" 5001 >"$sinkOut" &
    sinkPid=$!
    until grep -q listening "$sinkOut"; do sleep 0.2; done
    sent=$(docker exec "$2" python3 -m phantom.testnet.probe send "$serverAp" 5001 "$3" | tail -n 1)
    wait "$sinkPid"
    received=$(tail -n 1 "$sinkOut")
    rm -f "$sinkOut"
    exits=$(ctl "$2" status | field '["exit_addresses"]')
    python3 - "$demo" "$sent" "$received" "$clientAp" "$exits" <<'PY'
import ast, json, sys
demo, sent, received, clientAp, exits = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], ast.literal_eval(sys.argv[5])
ok = sent["sha256"] == received["sha256"] and sent["bytes"] == received["bytes"]
print(f"{demo}: TCP {sent['bytes'] / (1 << 20):.0f} MiB in {sent['seconds']:.2f} s "
      f"({sent['bytes'] / (1 << 20) / sent['seconds']:.1f} MiB/s), sha256 {sent['sha256'][:16]}... "
      + ("checksums match" if ok else f"CHECKSUMS DIFFER ({received['sha256'][:16]}...)"))
seen = received["from"]
how = " (its exit AP, not its published AP-address)" if seen in exits and seen != clientAp else " (its published AP-address)" if seen == clientAp else ""
print(f"{demo}: the server saw the client as {seen}{how}")
sys.exit(0 if ok else 1)
PY
}
