"""The one TLS port: mutual TLS 1.3 with key pinning, framed links, purpose dispatch."""
