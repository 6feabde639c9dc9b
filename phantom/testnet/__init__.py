"""
Bring many nodes up on one machine: the C{phantom-testnet} command.

A testnet lives in one directory: a manifest (C{testnet.json}) written before any node starts,
listing every node (its address, port, data directory, log and pidfile), and one subdirectory
per node. C{up} starts the nodes and waits until they have joined, C{status} lists them, C{down}
stops them; C{status} and C{down} work from the manifest alone, so they also work after a failed
or interrupted C{up}.

The modules, each using only those listed before it:

  - L{phantom.testnet.manifest}: the testnet directory, its manifest and its nodes' layout.
  - L{phantom.testnet.processes}: starting, finding and stopping node processes, and what their
    logs and control sockets say (through L{ControlClient<phantom.control.client.ControlClient>});
    the same in every mode.
  - L{phantom.testnet.interfaces}: L{ITestnet<phantom.testnet.interfaces.ITestnet>}, what every
    mode provides.
  - L{phantom.testnet.loopback}: the loopback mode, each node a C{twistd phantom} process on its
    own loopback address (127.0.0.2, 127.0.0.3, ...).
  - L{phantom.testnet.netns}: the netns mode, each node in a network namespace of its own with a
    tun device, on a bridge.
  - L{phantom.testnet.probe}: ping6 and a TCP transfer, run inside a node's namespace.
  - L{phantom.testnet.demo}: C{phantom-testnet demo} on a netns testnet.
  - L{phantom.testnet.cli}: the command line, running any mode.

Apart from these, L{phantom.testnet.inprocess} runs many nodes' link services and network
databases in one reactor, for tests and benchmarks.
"""
