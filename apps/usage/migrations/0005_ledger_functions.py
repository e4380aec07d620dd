"""The ledger's PostgreSQL functions (apps.usage.ledger calls them on the gateway's async pool),
written out once here; and each ledger row names the hold it settled.

- ``anvil_place``: one hold against the four budgets, in lock order (key total, key month,
  member month, the hold row, grant last); refused with SQLSTATE AV429 and the budget's name
  as DETAIL, which rolls the whole transaction back. Returns the hold's id and the four
  budgets (limit, used, held) right after it.
- ``anvil_settle``: a batch of settlements in one transaction. Each hold is claimed by deleting
  it (a hold already settled, withdrawn or swept is skipped), its ledger row is written with
  the charge the caller computed (``ledger.charge``, the one charge rule; never above the hold),
  and the four counters move held -> used once per row touched, locked in id order, table by
  table in lock order. Returns (hold id, ledger row id) of each hold it settled.
- ``anvil_withdraw``: a hold given back as if never placed (no ledger row); optionally only when
  it expired by a given time (the sweeper).

Lock order, in every transaction that changes counters (no two can wait on each other in a
cycle): hold rows -> keys_apikey -> usage_keymonthcounter -> usage_membermonthcounter ->
grants_grant.
"""

from django.db import migrations, models

PLACE = """
CREATE OR REPLACE FUNCTION anvil_place(
  _key bigint, _grant bigint, _user bigint, _model bigint, _period text,
  _amount numeric, _need numeric, _prompt_tokens integer, _max_completion_tokens integer,
  _prompt_price numeric, _completion_price numeric, _created timestamptz,
  _expires_at timestamptz, _durable boolean,
  OUT hold_id bigint,
  OUT grant_limit numeric, OUT grant_used numeric, OUT grant_held numeric,
  OUT key_limit numeric, OUT key_used numeric, OUT key_held numeric,
  OUT key_month_limit numeric, OUT key_month_used numeric, OUT key_month_held numeric,
  OUT member_limit numeric, OUT member_used numeric, OUT member_held numeric)
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT _durable THEN
    -- A crash can lose only this hold (nothing is charged for it); settlements are durable.
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;

  UPDATE keys_apikey SET credits_held = credits_held + _amount
   WHERE id = _key AND grant_id = _grant
     AND (total_limit IS NULL OR total_limit - credits_used - credits_held >= _need)
  RETURNING total_limit, credits_used, credits_held, monthly_limit
       INTO key_limit, key_used, key_held, key_month_limit;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'AV429', MESSAGE = 'credit hold refused', DETAIL = 'key_total';
  END IF;

  -- The month's counter row is made by the first hold of the month.
  UPDATE usage_keymonthcounter SET held = held + _amount
   WHERE api_key_id = _key AND period = _period
     AND (key_month_limit IS NULL OR key_month_limit - used - held >= _need)
  RETURNING used, held INTO key_month_used, key_month_held;
  IF NOT FOUND THEN
    INSERT INTO usage_keymonthcounter (api_key_id, period, used, held)
    VALUES (_key, _period, 0, 0) ON CONFLICT DO NOTHING;
    UPDATE usage_keymonthcounter SET held = held + _amount
     WHERE api_key_id = _key AND period = _period
       AND (key_month_limit IS NULL OR key_month_limit - used - held >= _need)
    RETURNING used, held INTO key_month_used, key_month_held;
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'AV429', MESSAGE = 'credit hold refused',
                            DETAIL = 'key_monthly';
    END IF;
  END IF;

  SELECT monthly_limit INTO member_limit
    FROM usage_memberlimit WHERE grant_id = _grant AND user_id = _user;
  UPDATE usage_membermonthcounter SET held = held + _amount
   WHERE grant_id = _grant AND user_id = _user AND period = _period
     AND (member_limit IS NULL OR member_limit - used - held >= _need)
  RETURNING used, held INTO member_used, member_held;
  IF NOT FOUND THEN
    INSERT INTO usage_membermonthcounter (grant_id, user_id, period, used, held)
    VALUES (_grant, _user, _period, 0, 0) ON CONFLICT DO NOTHING;
    UPDATE usage_membermonthcounter SET held = held + _amount
     WHERE grant_id = _grant AND user_id = _user AND period = _period
       AND (member_limit IS NULL OR member_limit - used - held >= _need)
    RETURNING used, held INTO member_used, member_held;
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'AV429', MESSAGE = 'credit hold refused',
                            DETAIL = 'member_monthly';
    END IF;
  END IF;

  INSERT INTO usage_hold (api_key_id, user_id, grant_id, model_id, period, amount, prompt_tokens,
                          max_completion_tokens, prompt_price, completion_price, created, expires_at)
  VALUES (_key, _user, _grant, _model, _period, _amount, _prompt_tokens, _max_completion_tokens,
          _prompt_price, _completion_price, _created, _expires_at)
  RETURNING id INTO hold_id;

  UPDATE grants_grant SET credits_held = credits_held + _amount
   WHERE id = _grant AND credits_allocated - credits_used - credits_held >= _need
  RETURNING credits_allocated, credits_used, credits_held INTO grant_limit, grant_used, grant_held;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'AV429', MESSAGE = 'credit hold refused', DETAIL = 'grant';
  END IF;
END $$;
"""

SETTLE = """
CREATE OR REPLACE FUNCTION anvil_settle(
  _holds bigint[], _credits numeric[], _prompt_tokens integer[], _completion_tokens integer[],
  _outcomes text[], _latencies integer[], _estimated boolean[], _capped boolean[],
  _created timestamptz)
RETURNS TABLE (settled_hold bigint, entry bigint)
LANGUAGE plpgsql AS $$
DECLARE
  _ids bigint[]; _entries bigint[]; _keys bigint[]; _users bigint[]; _grants bigint[];
  _periods text[]; _amounts numeric[]; _charges numeric[];
BEGIN
  WITH asked AS (
    SELECT * FROM unnest(_holds, _credits, _prompt_tokens, _completion_tokens, _outcomes,
                         _latencies, _estimated, _capped)
           AS a(id, credits, prompt_tokens, completion_tokens, outcome, latency_ms, estimated,
                capped)
  ), claimed AS (
    DELETE FROM usage_hold h USING asked a WHERE h.id = a.id
    RETURNING h.id, h.api_key_id, h.user_id, h.grant_id, h.model_id, h.period, h.amount,
              a.credits, a.prompt_tokens, a.completion_tokens, a.outcome, a.latency_ms,
              a.estimated, a.capped
  ), written AS (
    INSERT INTO usage_ledgerentry (created, api_key_id, user_id, grant_id, model_id, period,
                                   prompt_tokens, completion_tokens, credits, outcome, latency_ms,
                                   estimated, capped, rolled_up, hold_id)
    SELECT _created, api_key_id, user_id, grant_id, model_id, period, prompt_tokens,
           completion_tokens, credits, outcome, latency_ms, estimated, capped, false, id
      FROM claimed
    RETURNING id, hold_id
  )
  SELECT array_agg(c.id), array_agg(w.id), array_agg(c.api_key_id), array_agg(c.user_id),
         array_agg(c.grant_id), array_agg(c.period), array_agg(c.amount), array_agg(c.credits)
    INTO _ids, _entries, _keys, _users, _grants, _periods, _amounts, _charges
    FROM claimed c JOIN written w ON w.hold_id = c.id;
  IF _ids IS NULL THEN
    RETURN;
  END IF;
  IF EXISTS (SELECT FROM unnest(_amounts, _charges) AS m(amount, charge) WHERE charge > amount) THEN
    RAISE EXCEPTION 'a settlement may not charge more than its hold';
  END IF;

  PERFORM FROM keys_apikey WHERE id = ANY(_keys) ORDER BY id FOR UPDATE;
  UPDATE keys_apikey k SET credits_held = k.credits_held - m.amount,
                           credits_used = k.credits_used + m.charge
    FROM (SELECT key, sum(amount) AS amount, sum(charge) AS charge
            FROM unnest(_keys, _amounts, _charges) AS s(key, amount, charge) GROUP BY key) m
   WHERE k.id = m.key;

  PERFORM FROM usage_keymonthcounter c
    JOIN unnest(_keys, _periods) AS s(key, period) ON c.api_key_id = s.key AND c.period = s.period
   ORDER BY c.id FOR UPDATE OF c;
  UPDATE usage_keymonthcounter c SET held = c.held - m.amount, used = c.used + m.charge
    FROM (SELECT key, period, sum(amount) AS amount, sum(charge) AS charge
            FROM unnest(_keys, _periods, _amounts, _charges) AS s(key, period, amount, charge)
           GROUP BY key, period) m
   WHERE c.api_key_id = m.key AND c.period = m.period;

  PERFORM FROM usage_membermonthcounter c
    JOIN unnest(_grants, _users, _periods) AS s(grant_id, user_id, period)
      ON c.grant_id = s.grant_id AND c.user_id = s.user_id AND c.period = s.period
   ORDER BY c.id FOR UPDATE OF c;
  UPDATE usage_membermonthcounter c SET held = c.held - m.amount, used = c.used + m.charge
    FROM (SELECT grant_id, user_id, period, sum(amount) AS amount, sum(charge) AS charge
            FROM unnest(_grants, _users, _periods, _amounts, _charges)
                 AS s(grant_id, user_id, period, amount, charge)
           GROUP BY grant_id, user_id, period) m
   WHERE c.grant_id = m.grant_id AND c.user_id = m.user_id AND c.period = m.period;

  PERFORM FROM grants_grant WHERE id = ANY(_grants) ORDER BY id FOR UPDATE;
  UPDATE grants_grant g SET credits_held = g.credits_held - m.amount,
                            credits_used = g.credits_used + m.charge
    FROM (SELECT grant_id, sum(amount) AS amount, sum(charge) AS charge
            FROM unnest(_grants, _amounts, _charges) AS s(grant_id, amount, charge)
           GROUP BY grant_id) m
   WHERE g.id = m.grant_id;

  RETURN QUERY SELECT * FROM unnest(_ids, _entries);
END $$;
"""

WITHDRAW = """
CREATE OR REPLACE FUNCTION anvil_withdraw(_hold bigint, _expired_by timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  _key bigint; _user bigint; _grant bigint; _period text; _amount numeric;
BEGIN
  DELETE FROM usage_hold
   WHERE id = _hold AND (_expired_by IS NULL OR expires_at <= _expired_by)
  RETURNING api_key_id, user_id, grant_id, period, amount
       INTO _key, _user, _grant, _period, _amount;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  UPDATE keys_apikey SET credits_held = credits_held - _amount WHERE id = _key;
  UPDATE usage_keymonthcounter SET held = held - _amount
   WHERE api_key_id = _key AND period = _period;
  UPDATE usage_membermonthcounter SET held = held - _amount
   WHERE grant_id = _grant AND user_id = _user AND period = _period;
  UPDATE grants_grant SET credits_held = credits_held - _amount WHERE id = _grant;
  RETURN true;
END $$;
"""

DROP = """
DROP FUNCTION IF EXISTS anvil_place; DROP FUNCTION IF EXISTS anvil_settle;
DROP FUNCTION IF EXISTS anvil_withdraw;
"""


class PostgreSQLOnly(migrations.RunSQL):
    """RunSQL that does nothing on other databases (SQLite settles step by step in Python)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("usage", "0004_memberlimit_to_limits")]

    operations = [
        migrations.AddField(
            model_name="ledgerentry",
            name="hold_id",
            field=models.BigIntegerField(
                editable=False, null=True, help_text="The hold this row settled."
            ),
        ),
        PostgreSQLOnly(PLACE + SETTLE + WITHDRAW, DROP),
    ]
