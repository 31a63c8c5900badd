"""The tests' authenticator follows the drift django-otp learns, as a real one is followed.

A browser walk signed in with a code typed at the very end of a 30-second step and checked in
the next; django-otp then centred the device one step back, and the walk's next "fresh" code was
refused — a failure that came and went with the clock."""

import time

import pytest

from tests.conftest import add_authenticator, current_totp, make_user

pytestmark = pytest.mark.django_db


def test_the_next_code_is_accepted_after_the_device_learned_a_drift():
    device = add_authenticator(make_user("alice"))
    now_step = int((time.time() - device.t0) // device.step)
    # What verifying step S's code during step S+1 leaves behind.
    device.drift, device.last_t = -1, now_step - 1
    device.save()

    assert device.verify_token(current_totp(device, steps_ahead=1))

