"""Predictive dialer for debt collection: AMI/FastAGI call control, campaigns, store and CLI."""

__version__ = "0.1.0"
