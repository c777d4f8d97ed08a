"""pushgw: a drop-in replacement for the Prometheus Pushgateway."""

__version__ = "0.1.0"
