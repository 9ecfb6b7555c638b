"""Compliance guard: rules as data and an atomic check-and-reserve before every contact attempt."""
