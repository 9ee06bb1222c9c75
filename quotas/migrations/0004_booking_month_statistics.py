from django.db import migrations


class Migration(migrations.Migration):
    """Extended statistics on the month of a booking and its component, the grouping of the crediting
    query (analytics.selectors._CREDIT_UNMOVED_SQL): without them PostgreSQL guesses a year holds
    hundreds of thousands of groups and aggregates 1M bookings on one core."""

    dependencies = [("quotas", "0003_quotaplan_allocation_job")]

    operations = [
        migrations.RunSQL(
            "CREATE STATISTICS IF NOT EXISTS quotas_booking_month_stats"
            " ON (date_trunc('month', booked_on::timestamp)), component FROM quotas_booking",
            "DROP STATISTICS IF EXISTS quotas_booking_month_stats",
        )
    ]
