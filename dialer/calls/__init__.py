"""Call lifecycle: outcomes, the per-attempt state machine and its pure transition function."""
