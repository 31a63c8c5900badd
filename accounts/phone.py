"""Mobile numbers: parsed with `phonenumbers`, stored in E.164 (+15555550100)."""

import phonenumbers
from django.core.exceptions import ValidationError


def normalize_phone(value: str) -> str:
    """Return `value` in E.164, or raise ValidationError naming the problem."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(
            "Enter the mobile number in international format, starting with + and the "
            "country code (for example +44 7700 900123).",
            code="invalid_phone",
        ) from exc
    # "Possible" (right country code and length) rather than "valid" (a currently allocated
    # range): allocation tables age, and refusing a real on-call engineer's new number at
    # 2 a.m. is worse than accepting a fictional one.
    if not phonenumbers.is_possible_number(number):
        raise ValidationError("This is not a possible phone number.", code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_e164(value: str) -> None:
    """Model-level check: the stored value must already be a valid number in E.164."""
    if normalize_phone(value) != value:
        raise ValidationError(
            "Store mobile numbers in E.164, for example +15555550100.", code="not_e164"
        )
