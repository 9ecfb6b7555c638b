"""Test suite: specifications of the product behaviour."""
