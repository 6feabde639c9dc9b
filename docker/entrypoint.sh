#!/bin/sh
# Start a node in the foreground as the phantom user, with CAP_NET_ADMIN (ambient) for its tun
# device and nothing else of root's: its keys, state and control socket belong to phantom, so
#   docker compose exec -u phantom NODE phantomctl --node /var/lib/phantom status
# works. Environment:
#   PHANTOM_LISTEN_ADDRESS  the address to listen on (default: the container's first global
#                           IPv6 address, else its first IPv4 address: IPv4-only networks work)
#   PHANTOM_BOOTSTRAP       nodes to join through, HOST:PORT,... (host names such as a compose
#                           service name are resolved, again on every try)
#   PHANTOM_CONFIG          the text of a config file (INI) given to the node with --config
# Any arguments go to twistd phantom.
set -e
address="$PHANTOM_LISTEN_ADDRESS"
if [ -z "$address" ]; then
    address=$(hostname -I | tr ' ' '\n' | grep : | grep -v '^fe80' | head -n 1)
fi
if [ -z "$address" ]; then
    address=$(hostname -I | tr ' ' '\n' | grep -v : | grep . | head -n 1)
fi
set -- --port 7402 --listen-address "$address" --data-dir /var/lib/phantom --tun phantom0 "$@"
if [ -n "$PHANTOM_BOOTSTRAP" ]; then
    set -- "$@" --bootstrap "$PHANTOM_BOOTSTRAP"
fi
if [ -n "$PHANTOM_CONFIG" ]; then
    printf '%s\n' "$PHANTOM_CONFIG" > /etc/phantom/phantom.conf
    set -- "$@" --config /etc/phantom/phantom.conf
fi
# A Swarm service cannot map devices in (compose.yml's devices is ignored by docker stack
# deploy), but Docker's default device rules let a container use the tun device (char 10:200):
# make its node where none was mapped in.
if [ ! -c /dev/net/tun ]; then
    mkdir -p /dev/net && mknod /dev/net/tun c 10 200
fi
# The device node Docker maps in keeps the host's mode (often 0600 root).
chgrp phantom /dev/net/tun && chmod 0660 /dev/net/tun
exec setpriv --reuid phantom --regid phantom --init-groups --inh-caps +net_admin --ambient-caps +net_admin \
    twistd -n --pidfile= phantom "$@"
