"""Test helpers shared by the suites: real brokers, gateways and devices."""
