import pytest
from django.core.exceptions import ValidationError

from accounts.phone import normalize_phone, validate_e164


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+1 555-555-0100", "+15555550100"),
        ("+44 7700 900123", "+447700900123"),
        ("+33 6 12 34 56 78", "+33612345678"),
    ],
)
def test_numbers_are_normalised_to_e164(raw, e164):
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(
    "raw", ["", "07700 900123", "+99 123", "+1 555", "call me", "+" + "1" * 40, "+44\x00123"]
)
def test_invalid_numbers_are_refused_with_a_clear_message(raw):
    with pytest.raises(ValidationError):
        normalize_phone(raw)


def test_model_validation_wants_the_stored_form():
    validate_e164("+447700900123")
    with pytest.raises(ValidationError):
        validate_e164("+44 7700 900123")
