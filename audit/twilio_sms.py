"""The Twilio SMS backend: the only module that imports the Twilio SDK."""

from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from audit.sms import SmsError

TIMEOUT_SECONDS = 10


class TwilioSmsBackend:
    # Tests put a fake transport here (a twilio.http.HttpClient); production uses Twilio's own.
    http_client = None

    def __init__(self):
        self.client = Client(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            http_client=self.http_client or TwilioHttpClient(timeout=TIMEOUT_SECONDS),
        )

    def send(self, to: str, body: str) -> str:
        try:
            message = self.client.messages.create(
                to=to, from_=settings.TWILIO_FROM_NUMBER, body=body
            )
        except TwilioRestException as exc:
            # 4xx other than rate limiting will not succeed on retry (bad number, bad account).
            retryable = exc.status >= 500 or exc.status == 429
            raise SmsError(f"Twilio {exc.status} (code {exc.code})", retryable=retryable) from exc
        except (TwilioException, OSError) as exc:
            raise SmsError(f"Twilio unreachable: {type(exc).__name__}") from exc
        return message.sid
