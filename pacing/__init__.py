"""Pure pacing algorithms: how many calls to originate now, given agents, calls in flight and statistics."""
