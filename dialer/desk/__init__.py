"""The agent desktop's use cases: screen pop, dispositions, callbacks (services, no web)."""
