"""Compliance guard: compliance_reserve(), PostgreSQL's check-and-reserve in one call.

The function locks the ledgers it is given (sorted by the caller), observes the ledgers and
flags and, when every check passes, inserts the ledger entries and the reservation; see
`compliance_guard.store_sql.PG_RESERVE_FUNCTION`, of which this is a frozen copy (a later
version of the function gets its own revision). Nothing on SQLite, which keeps taking its write
lock from the client.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESERVE_FUNCTION = """CREATE OR REPLACE FUNCTION compliance_reserve(
  p_lock_keys json, p_checks json, p_flags json, p_reserve boolean, p_at_us bigint,
  p_reservation_id text, p_payload text, p_async_commit boolean
) RETURNS TABLE (
  r_granted boolean, r_kind integer, r_index bigint, r_count integer, r_pivot_us bigint,
  r_flags text[]
) LANGUAGE plpgsql VOLATILE AS $body$
BEGIN
  IF p_async_commit THEN
    -- SqlStore(durable=False): this transaction's commit does not wait for the WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
  IF json_array_length(p_lock_keys) > 0 THEN
    -- DO UPDATE (not DO NOTHING) takes the row lock on an existing row too.
    INSERT INTO compliance_lock (lock_key)
    SELECT k FROM json_array_elements_text(p_lock_keys) WITH ORDINALITY AS t(k, i) ORDER BY i
    ON CONFLICT (lock_key) DO UPDATE SET lock_key = excluded.lock_key;
  END IF;
  RETURN QUERY
  WITH inp AS (
    SELECT e.i, e.v ->> 0 AS key, (e.v ->> 1)::bigint AS ws, (e.v ->> 2)::int AS lim,
           (e.v ->> 3)::bool AS rec
    FROM json_array_elements(p_checks) WITH ORDINALITY AS e(v, i)
  ), chk AS (
    SELECT inp.i, inp.lim, inp.rec, inp.key,
           (SELECT array_agg(l.at_us ORDER BY l.at_us) FROM compliance_ledger l
            WHERE l.ledger_key = inp.key AND l.at_us >= inp.ws) AS times
    FROM inp
  ), fl AS (
    SELECT e.j, e.v ->> 1 AS blocking, e.v ->> 2 AS required,
           coalesce((SELECT array_agg(x.flag::text ORDER BY x.flag) FROM compliance_flag x
                     WHERE x.target = e.v ->> 0), '{}') AS present
    FROM json_array_elements(p_flags) WITH ORDINALITY AS e(v, j)
  ), ok AS (
    SELECT p_reserve
       AND NOT EXISTS (SELECT 1 FROM chk WHERE coalesce(cardinality(chk.times), 0) >= chk.lim)
       AND NOT EXISTS (
         SELECT 1 FROM fl
         WHERE EXISTS (SELECT 1 FROM unnest(fl.present) p
                       WHERE position(',' || p || ',' in fl.blocking) > 0)
            OR EXISTS (SELECT 1 FROM unnest(string_to_array(fl.required, ',')) r
                       WHERE r <> '' AND NOT r = ANY(fl.present))
       ) AS granted
  ), new_entries AS (
    INSERT INTO compliance_ledger (ledger_key, at_us, member)
    SELECT chk.key, p_at_us, p_reservation_id FROM chk, ok WHERE ok.granted AND chk.rec
  ), new_reservation AS (
    INSERT INTO compliance_reservation (id, state, created_us, payload)
    SELECT p_reservation_id, 'pending', p_at_us, p_payload FROM ok WHERE ok.granted
  )
  SELECT (SELECT granted FROM ok), 0, chk.i, coalesce(cardinality(chk.times), 0),
         CASE WHEN coalesce(cardinality(chk.times), 0) >= chk.lim
              THEN chk.times[cardinality(chk.times) - chk.lim + 1] END,
         NULL::text[]
  FROM chk
  UNION ALL
  SELECT (SELECT granted FROM ok), 1, fl.j, 0, NULL::bigint, fl.present FROM fl
  UNION ALL
  SELECT granted, 2, 0, 0, NULL::bigint, NULL::text[] FROM ok;
END
$body$
"""

DROP_RESERVE_FUNCTION = (
    "DROP FUNCTION IF EXISTS "
    "compliance_reserve(json, json, json, boolean, bigint, text, text, boolean)"
)


def _postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    if _postgresql():
        op.execute(RESERVE_FUNCTION)


def downgrade() -> None:
    if _postgresql():
        op.execute(DROP_RESERVE_FUNCTION)
