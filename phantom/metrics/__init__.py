"""
Prometheus metrics of a node, served over HTTP from its own reactor (C{--metrics-address}):
L{collector.NodeCollector} reads the node's state at each scrape, L{service.MetricsService}
serves it. docs/metrics.md lists every metric.
"""
