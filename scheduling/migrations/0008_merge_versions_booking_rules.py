"""Joins the two branches that grew from 0004: resource versions and booking rules."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0005_resource_versions"),
        ("scheduling", "0007_booking_rules"),
    ]

    operations = []
