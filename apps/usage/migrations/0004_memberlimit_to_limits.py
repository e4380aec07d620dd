# MemberLimit moved to apps.limits (limits.0002), which now owns the table usage_memberlimit:
# only Django's state forgets the model here, the table stays as it is.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('limits', '0002_memberlimit_from_usage'),
        ('usage', '0003_hold_without_constraints'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='MemberLimit')],
            database_operations=[],
        ),
    ]
