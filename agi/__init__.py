"""FastAGI protocol core and server, and the call-flow scripts Asterisk runs on answered calls."""
