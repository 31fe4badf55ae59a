"""hft_ray: a Ray-distributed, multi-exchange crypto arbitrage cluster."""

__version__ = "0.1.0"
