"""Execution: both legs of an approved arbitrage at once, and the repair of broken legs."""
