"""Feeds: one per venue; normalise, check and micro-batch books towards the detectors."""
