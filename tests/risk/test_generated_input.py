"""Generated input for the risk admin (SPEC §2.7): the whole rule table posted with any values
in its cells (ticks, numbers out of range, text, NUL) and a tampered management form never
causes a 500, and the table in the database never has a gap or a contradiction."""

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.catalogue import EventKind
from audit.models import AuditEvent
from risk.models import RiskRule
from risk.rules import RULE_FIELDS, current_table, table_problems
from tests.risk.test_admin import CHANGELIST, changelist_form, set_cell

pytestmark = pytest.mark.django_db

BOOLEAN_FIELDS = ("self_service", "step_up", "alert_email", "alert_sms", "alert_webhook")
NUMBER_FIELDS = ("max_minutes", "approvals")
CELL_VALUES = st.one_of(
    st.none(),  # left out, as an unticked box
    st.sampled_from(["on", "off", "true", "false", "0", "1", "", "15", "60", "240", "20160",
                     "20161", "14", "2", "3", "4", "-1", "1e3", "1.5", " 60 "]),
    st.integers(-10**12, 10**12).map(str),
    st.text(max_size=30),
    st.text(max_size=10).map(lambda text: text + "\x00"),
)
MANAGEMENT = st.one_of(st.just({}), st.dictionaries(
    st.sampled_from(["form-TOTAL_FORMS", "form-INITIAL_FORMS", "form-MAX_NUM_FORMS"]),
    st.one_of(st.none(), st.sampled_from(["0", "1", "15", "16", "17", "1001", "-1", "x"])),
    max_size=2))
CELLS = st.integers(0, 15)
# A few plausible edits (ticks, durations and approvals in range): many are saved, the rest
# contradict a neighbour. Or anything: index 16 is a form the page never had.
PLAUSIBLE = st.dictionaries(
    st.one_of(st.tuples(CELLS, st.sampled_from(BOOLEAN_FIELDS)),
              st.tuples(CELLS, st.sampled_from(NUMBER_FIELDS))),
    st.sampled_from([None, "on", "15", "60", "240", "1440", "20160", "1", "2", "3"]),
    min_size=1, max_size=2)
EDITS = st.one_of(PLAUSIBLE, st.dictionaries(
    st.tuples(st.integers(0, 16), st.sampled_from([*RULE_FIELDS, "id"])), CELL_VALUES,
    max_size=6))


@pytest.fixture
def table_client(verified_client, admin_user):
    return verified_client(admin_user)


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=EDITS, management=MANAGEMENT,
       with_save=st.sampled_from([True, True, True, False]),
       query=st.sampled_from(["", "", "?sensitivity=low", "?severity=sev1", "?q=x", "?o=2",
                              "?p=2", "?sensitivity=bogus", "?all="]))
def test_generated_rule_tables_never_cause_a_500_nor_a_broken_table(table_client, edits,
                                                                     management, with_save,
                                                                     query):
    data, _ = changelist_form(table_client)
    if not with_save:
        data.pop("_save")
    for key, value in {**{f"form-{index}-{name}": value
                          for (index, name), value in edits.items()}, **management}.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    response = table_client.post(reverse(CHANGELIST) + query, data)
    assert response.status_code in {200, 302, 400}, response.status_code
    assert RiskRule.objects.count() == 16
    assert table_problems(current_table()) == []


def _duplicate(data, index, rule_pk):
    """A 17th form for an existing cell, counted as one of the page's own."""
    data.update({"form-TOTAL_FORMS": "17", "form-INITIAL_FORMS": "17",
                 "form-16-id": str(rule_pk), "form-16-max_minutes": "20160",
                 "form-16-approvals": "1", "form-16-alert_email": "on"})


TAMPERED = {
    "a second form for the same cell": _duplicate,
    "the id of no cell": lambda data, index, pk: data.update({"form-0-id": "999999"}),
    "an id that is not a number": lambda data, index, pk: data.update({"form-0-id": "x\x00"}),
    "no id": lambda data, index, pk: data.pop("form-0-id"),
    "no management form": lambda data, index, pk: data.pop("form-TOTAL_FORMS"),
    "fewer forms than cells": lambda data, index, pk: data.update({"form-TOTAL_FORMS": "3",
                                                                  "form-INITIAL_FORMS": "3"}),
}


@pytest.mark.parametrize("tamper", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_tampered_table_form_never_breaks_the_table(table_client, tamper):
    """Each with a change that would break the table (low × SEV1 without self-service) on
    another form: never a 500, never saved."""
    before = current_table()
    data, index = changelist_form(table_client)
    low = index[("low", "sev1")]
    set_cell(data, index, ("low", "sev1"), self_service=False)
    tamper(data, index, int(data[f"form-{low}-id"]))
    response = table_client.post(reverse(CHANGELIST), data)
    assert response.status_code in {200, 400}, response.status_code
    assert current_table() == before
    assert not AuditEvent.objects.filter(kind=EventKind.RISK_RULES_CHANGED).exists()
