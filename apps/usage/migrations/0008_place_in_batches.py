"""``anvil_place_batch``: the holds of several requests placed in one transaction.

Under load, placements queue on the rows they share (the grant's above all), each a transaction
of its own. A batch takes every row its holds need first, in the lock order of every ledger
transaction (keys, key months, member months, grants; each table in id order), so it can not
deadlock with another; then places each hold with ``anvil_place`` (migration 0005, where each
budget is checked), in the order given. A refused hold rolls back only itself (its own
subtransaction) and is reported with the budget that refused it.

Returns one row per hold: its position (``item``), the hold's id or the refusing budget, and the four
budgets right after it, as ``anvil_place`` returns them.
"""

import importlib

from django.db import migrations

PLACE_BATCH = """
CREATE OR REPLACE FUNCTION anvil_place_batch(
  _keys bigint[], _grants bigint[], _users bigint[], _models bigint[], _periods text[],
  _amounts numeric[], _needs numeric[], _prompt_tokens integer[],
  _max_completion_tokens integer[], _prompt_prices numeric[], _completion_prices numeric[],
  _created timestamptz[], _expires_at timestamptz[], _durable boolean)
RETURNS TABLE (
  item integer, hold_id bigint, refused text,
  grant_limit numeric, grant_used numeric, grant_held numeric,
  key_limit numeric, key_used numeric, key_held numeric,
  key_month_limit numeric, key_month_used numeric, key_month_held numeric,
  member_limit numeric, member_used numeric, member_held numeric)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  placed record;
BEGIN
  PERFORM FROM keys_apikey WHERE id = ANY(_keys) ORDER BY id FOR UPDATE;
  PERFORM FROM usage_keymonthcounter c
    JOIN unnest(_keys, _periods) AS s(key, period) ON c.api_key_id = s.key AND c.period = s.period
   ORDER BY c.id FOR UPDATE OF c;
  PERFORM FROM usage_membermonthcounter c
    JOIN unnest(_grants, _users, _periods) AS s(grant_id, user_id, period)
      ON c.grant_id = s.grant_id AND c.user_id = s.user_id AND c.period = s.period
   ORDER BY c.id FOR UPDATE OF c;
  PERFORM FROM grants_grant WHERE id = ANY(_grants) ORDER BY id FOR UPDATE;

  FOR i IN 1 .. cardinality(_keys) LOOP
    item := i;
    BEGIN
      SELECT * INTO placed FROM anvil_place(
        _keys[i], _grants[i], _users[i], _models[i], _periods[i], _amounts[i], _needs[i],
        _prompt_tokens[i], _max_completion_tokens[i], _prompt_prices[i], _completion_prices[i],
        _created[i], _expires_at[i], _durable);
      hold_id := placed.hold_id;
      refused := NULL;
      grant_limit := placed.grant_limit; grant_used := placed.grant_used;
      grant_held := placed.grant_held;
      key_limit := placed.key_limit; key_used := placed.key_used; key_held := placed.key_held;
      key_month_limit := placed.key_month_limit; key_month_used := placed.key_month_used;
      key_month_held := placed.key_month_held;
      member_limit := placed.member_limit; member_used := placed.member_used;
      member_held := placed.member_held;
    EXCEPTION WHEN SQLSTATE 'AV429' THEN
      GET STACKED DIAGNOSTICS refused = PG_EXCEPTION_DETAIL;
      hold_id := NULL;
      grant_limit := NULL; grant_used := NULL; grant_held := NULL;
      key_limit := NULL; key_used := NULL; key_held := NULL;
      key_month_limit := NULL; key_month_used := NULL; key_month_held := NULL;
      member_limit := NULL; member_used := NULL; member_held := NULL;
    END;
    RETURN NEXT;
  END LOOP;
END $$;
"""

_0005 = importlib.import_module("apps.usage.migrations.0005_ledger_functions")


class Migration(migrations.Migration):
    dependencies = [("usage", "0007_settle_one_hold_simply")]

    operations = [
        _0005.PostgreSQLOnly(PLACE_BATCH, "DROP FUNCTION IF EXISTS anvil_place_batch;"),
    ]
