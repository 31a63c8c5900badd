"""SMS backends, chosen like Django's email backends by settings.SMS_BACKEND:
`console` (prints, for the demo), `locmem` (collects in `outbox`, for tests), `twilio`
(audit/twilio_sms.py, the only module that imports the Twilio SDK), or a dotted path."""

import sys
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

BACKENDS = {
    "console": "audit.sms.ConsoleSmsBackend",
    "locmem": "audit.sms.LocmemSmsBackend",
    "twilio": "audit.twilio_sms.TwilioSmsBackend",
}


@dataclass
class SmsMessage:
    to: str
    body: str
    message_id: str = ""


class SmsError(Exception):
    """The provider refused or failed; `retryable` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class ConsoleSmsBackend:
    def send(self, to: str, body: str) -> str:
        sys.stdout.write(f"SMS to {to}:\n{body}\n{'-' * 40}\n")
        sys.stdout.flush()
        return "console"


outbox: list[SmsMessage] = []


class LocmemSmsBackend:
    def send(self, to: str, body: str) -> str:
        message = SmsMessage(to, body, f"locmem-{len(outbox) + 1}")
        outbox.append(message)
        return message.message_id


def get_sms_backend():
    return import_string(BACKENDS.get(settings.SMS_BACKEND, settings.SMS_BACKEND))()
