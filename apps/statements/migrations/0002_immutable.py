"""The database refuses to change a closed statement: UPDATE of either table raises, and on
PostgreSQL so does DELETE (TRUNCATE, which test databases use to reset, is not a row change).
SQLite keeps DELETE possible because Django's flush empties tables with DELETE."""

from django.db import migrations

TABLES = ("statements_statement", "statements_statementline")

POSTGRESQL_FUNCTION = """
CREATE OR REPLACE FUNCTION statements_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'closed statements are immutable: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$"""


def forwards(apps, schema_editor):
    execute = schema_editor.execute
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        execute(POSTGRESQL_FUNCTION, params=None)  # its % are not placeholders
        for table in TABLES:
            execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION statements_refuse_change()"
            )
    elif vendor == "sqlite":
        for table in TABLES:
            execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} BEGIN "
                "SELECT RAISE(ABORT, 'closed statements are immutable'); END"
            )


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
        elif vendor == "sqlite":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS statements_refuse_change()")


class Migration(migrations.Migration):
    dependencies = [("statements", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
