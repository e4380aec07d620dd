"""The ledger row keeps the request's X-Request-ID, so a person can find a request they quote.

``anvil_settle`` (migration 0007) takes the request ids beside the rest of each settlement;
the index serves the key page's search (a key's rows with a given id; rows without one are
left out of it).
"""

import importlib

from django.db import migrations, models

_0005 = importlib.import_module("apps.usage.migrations.0005_ledger_functions")
_0007 = importlib.import_module("apps.usage.migrations.0007_settle_one_hold_simply")

OLD = (
    "DROP FUNCTION anvil_settle(bigint[], numeric[], integer[], integer[], text[], integer[],"
    " boolean[], boolean[], timestamptz);"
)
NEW = (
    "DROP FUNCTION anvil_settle(bigint[], numeric[], integer[], integer[], text[], integer[],"
    " boolean[], boolean[], text[], timestamptz);"
)

SETTLE = """
CREATE OR REPLACE FUNCTION anvil_settle(
  _holds bigint[], _credits numeric[], _prompt_tokens integer[], _completion_tokens integer[],
  _outcomes text[], _latencies integer[], _estimated boolean[], _capped boolean[],
  _request_ids text[], _created timestamptz)
RETURNS TABLE (settled_hold bigint, entry bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  _ids bigint[]; _entries bigint[]; _keys bigint[]; _users bigint[]; _grants bigint[];
  _periods text[]; _amounts numeric[]; _charges numeric[];
  _key bigint; _user bigint; _grant bigint; _model bigint; _period text; _amount numeric;
  _entry bigint;
BEGIN
  IF cardinality(_holds) = 1 THEN
    DELETE FROM usage_hold WHERE id = _holds[1]
    RETURNING api_key_id, user_id, grant_id, model_id, period, amount
         INTO _key, _user, _grant, _model, _period, _amount;
    IF NOT FOUND THEN
      RETURN;
    END IF;
    IF _credits[1] > _amount THEN
      RAISE EXCEPTION 'a settlement may not charge more than its hold';
    END IF;
    INSERT INTO usage_ledgerentry (created, api_key_id, user_id, grant_id, model_id, period,
                                   prompt_tokens, completion_tokens, credits, outcome, latency_ms,
                                   estimated, capped, rolled_up, hold_id, request_id)
    VALUES (_created, _key, _user, _grant, _model, _period, _prompt_tokens[1],
            _completion_tokens[1], _credits[1], _outcomes[1], _latencies[1], _estimated[1],
            _capped[1], false, _holds[1], _request_ids[1])
    RETURNING id INTO _entry;
    UPDATE keys_apikey SET credits_held = credits_held - _amount,
                           credits_used = credits_used + _credits[1]
     WHERE id = _key;
    UPDATE usage_keymonthcounter SET held = held - _amount, used = used + _credits[1]
     WHERE api_key_id = _key AND period = _period;
    UPDATE usage_membermonthcounter SET held = held - _amount, used = used + _credits[1]
     WHERE grant_id = _grant AND user_id = _user AND period = _period;
    UPDATE grants_grant SET credits_held = credits_held - _amount,
                            credits_used = credits_used + _credits[1]
     WHERE id = _grant;
    settled_hold := _holds[1];
    entry := _entry;
    RETURN NEXT;
    RETURN;
  END IF;

  WITH asked AS (
    SELECT * FROM unnest(_holds, _credits, _prompt_tokens, _completion_tokens, _outcomes,
                         _latencies, _estimated, _capped, _request_ids)
           AS a(id, credits, prompt_tokens, completion_tokens, outcome, latency_ms, estimated,
                capped, request_id)
  ), claimed AS (
    DELETE FROM usage_hold h USING asked a WHERE h.id = a.id
    RETURNING h.id, h.api_key_id, h.user_id, h.grant_id, h.model_id, h.period, h.amount,
              a.credits, a.prompt_tokens, a.completion_tokens, a.outcome, a.latency_ms,
              a.estimated, a.capped, a.request_id
  ), written AS (
    INSERT INTO usage_ledgerentry (created, api_key_id, user_id, grant_id, model_id, period,
                                   prompt_tokens, completion_tokens, credits, outcome, latency_ms,
                                   estimated, capped, rolled_up, hold_id, request_id)
    SELECT _created, api_key_id, user_id, grant_id, model_id, period, prompt_tokens,
           completion_tokens, credits, outcome, latency_ms, estimated, capped, false, id,
           request_id
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


class Migration(migrations.Migration):
    dependencies = [("usage", "0008_place_in_batches")]

    operations = [
        migrations.AddField(
            model_name="ledgerentry",
            name="request_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=128),
        ),
        migrations.AddIndex(
            model_name="ledgerentry",
            index=models.Index(
                condition=~models.Q(request_id=""),
                fields=["api_key", "request_id"],
                name="usage_ledger_key_request",
            ),
        ),
        _0005.PostgreSQLOnly(OLD + SETTLE, NEW + _0007.SETTLE),
    ]
