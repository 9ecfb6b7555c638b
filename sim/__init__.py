"""Asterisk and PSTN impostor: AMI server, FastAGI client side, debtor/agent models, pacing simulator."""
