"""Last used and the request count of existing keys, from what is already rolled up (the
rollup marks keys from now on)."""

from django.db import migrations

BACKFILL = """
UPDATE keys_apikey SET
  request_count = COALESCE(
    (SELECT SUM(b.requests) FROM usage_usagebucket b WHERE b.api_key_id = keys_apikey.id), 0),
  last_used = (SELECT MAX(e.created) FROM usage_ledgerentry e
               WHERE e.api_key_id = keys_apikey.id AND e.rolled_up)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0002_api_key_request_count"),
        ("usage", "0005_ledger_functions"),
    ]

    operations = [migrations.RunSQL(BACKFILL, migrations.RunSQL.noop)]
