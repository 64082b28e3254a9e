"""The chain's central membership API."""
