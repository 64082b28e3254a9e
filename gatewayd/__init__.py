"""gatewayd: a store's device gateway and the chain's central membership API."""

__version__ = "0.1.0"
