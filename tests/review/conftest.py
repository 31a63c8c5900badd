"""The review tests read the alerts a use sent: each starts with empty outboxes."""

import pytest
from django.core import mail

from audit import sms


@pytest.fixture(autouse=True)
def _empty_outboxes():
    sms.outbox.clear()
    mail.outbox.clear()
