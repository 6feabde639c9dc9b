#!/bin/sh
# Start a node in the foreground: its address is the container's first IPv6 address unless
# PHANTOM_LISTEN_ADDRESS says otherwise; PHANTOM_BOOTSTRAP names nodes to join through;
# PHANTOM_CONFIG names a configuration file (compose.yml: /etc/phantom/testnet.ini).
set -e
address="${PHANTOM_LISTEN_ADDRESS:-$(hostname -I | tr ' ' '\n' | grep : | grep -v '^fe80' | head -n 1)}"
set -- --port 7402 --listen-address "$address" --data-dir /var/lib/phantom --tun phantom0 "$@"
if [ -n "$PHANTOM_CONFIG" ]; then
    set -- "$@" --config "$PHANTOM_CONFIG"
fi
if [ -n "$PHANTOM_BOOTSTRAP" ]; then
    set -- "$@" --bootstrap "$PHANTOM_BOOTSTRAP"
fi
exec twistd -n --pidfile= --uid phantom --gid phantom phantom "$@"
