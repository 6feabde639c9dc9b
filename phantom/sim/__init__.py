"""
A discrete-event simulation of a whole Phantom network on one virtual clock: thousands of nodes
running the node's own cores (the routing table, L{phantom.netdb.lookup.Lookup}, records and
their validation, node sampling, path planning and the setup arrays), with no sockets and no
TLS. Messages are delayed by a latency model, lost at a rate, and nodes come and go (churn).

One seed reproduces a run exactly. See C{docs/scale.md} for the model and what it leaves out;
C{python -m bench sim} reports its figures.
"""
