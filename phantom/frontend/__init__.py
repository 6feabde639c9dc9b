"""The tun frontend: AP-addresses on a tun device, IPv6 packets carried through tunnels."""
