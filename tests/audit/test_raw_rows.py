"""audit/db.py's load_instance: a hot path's raw row becomes a model instance with each value
in its own field, whatever order the statement selected the columns in."""

import pytest

from audit.db import load_instance, prepared_cursor
from breakglass.models import Group

pytestmark = pytest.mark.django_db


def test_a_row_in_any_column_order_loads_each_value_into_its_own_field():
    stored = Group.objects.create(name="Billing", slug="billing", sensitivity="high",
                                  break_glass_minutes=45)
    # break_glass_minutes is declared after sensitivity on the model; selected before it here.
    columns = ["slug", "break_glass_minutes", "id", "sensitivity", "name"]
    with prepared_cursor() as cursor:
        cursor.execute("SELECT slug, break_glass_minutes, id, sensitivity, name "
                       "FROM breakglass_group WHERE id = %s", [stored.pk])
        row = cursor.fetchone()
    group = load_instance(Group, columns, row)
    assert (group.pk, group.name, group.slug, group.sensitivity, group.break_glass_minutes) == (
        stored.pk, "Billing", "billing", "high", 45)
    assert group.get_deferred_fields() >= {"description", "requestable"}
