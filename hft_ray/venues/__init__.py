"""Venues: one protocol, several kinds (simulated, live through ccxt, replayed from files)."""
