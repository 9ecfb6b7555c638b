"""Worked examples and helpers shared by the compliance guard's tests."""
