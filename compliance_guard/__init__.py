"""Compliance guard: rules as data and an atomic check-and-reserve before every contact attempt."""

# Kept import-free on purpose: `dialer` loads every command module at start-up, and the guard's
# dependencies (phonenumbers, holidays) are heavy. Import from the submodules:
#   compliance_guard.service  Guard, RuleBook          compliance_guard.models  AttemptRequest, ...
#   compliance_guard.rules    load_preset, load_ruleset compliance_guard.store   MemoryStore
#   compliance_guard.store_sql SqlStore, metadata      compliance_guard.store_redis RedisStore
#   compliance_guard.audit    JsonlAudit, verify
