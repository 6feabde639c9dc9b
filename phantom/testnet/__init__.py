"""
Bring many nodes up on one machine: the C{phantom-testnet} command.

A testnet lives in one directory: a manifest (C{testnet.json}) written before any node starts,
listing every node (its address, port, data directory, log and pidfile), and one subdirectory
per node. C{up} starts the nodes and waits until they have joined, C{status} lists them, C{down}
stops them; C{status} and C{down} work from the manifest alone, so they also work after a failed
or interrupted C{up}.

L{phantom.testnet.loopback} runs each node as a C{twistd phantom} process on its own loopback
address (127.0.0.2, 127.0.0.3, ...); L{phantom.testnet.cli} is the command line.
"""
