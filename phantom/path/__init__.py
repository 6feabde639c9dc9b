"""
Routing paths (paper §7.1): planning which nodes take part and in what order, the owner's side
of the two-round construction, and the roles a node plays in someone else's path (X, Y, T).
"""
