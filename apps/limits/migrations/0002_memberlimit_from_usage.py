# MemberLimit moves here from apps.usage with its table: only Django's state changes, the
# database is left exactly as it is (usage_memberlimit keeps its name, rows, constraints and
# indexes; the credit holds read it by that name).

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('grants', '0002_collective_monthly_limit'),
        ('limits', '0001_initial'),
        ('usage', '0003_hold_without_constraints'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='MemberLimit',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('monthly_limit', models.DecimalField(blank=True, decimal_places=6, max_digits=20, null=True, validators=[django.core.validators.MinValueValidator(0)])),
                        ('changed_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('changed_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('grant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='member_limits', to='grants.grant')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'usage_memberlimit',
                        'constraints': [models.UniqueConstraint(fields=('grant', 'user'), name='usage_memberlimit_unique_member_per_grant'), models.CheckConstraint(condition=models.Q(('monthly_limit__isnull', True), ('monthly_limit__gte', 0), _connector='OR'), name='usage_memberlimit_limit_not_negative')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
