"""A webhook receiver written as the README tells one to be: it verifies every delivery with
the standardwebhooks package (the signature and the five-minute timestamp window), refuses what
fails with 400, and treats a webhook-id it already accepted as a repeat to drop."""

import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.ports import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified_with: list[str] = field(default_factory=list)  # the secrets that verified it
    errors: list[str] = field(default_factory=list)  # the package's words for the others
    repeat: bool = False

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class VerifyingReceiver:
    """`secrets` are the ones this receiver holds; each is tried on its own, so a test sees
    what a receiver holding only that one would decide. A verified delivery is answered with
    `status` (503 makes the relay retry)."""

    def __init__(self, secrets: list[str] = (), *, status: int = 204):
        self.secrets = list(secrets)
        self.status = status
        self.received: list[Received] = []
        self.accepted_ids: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(receiver.take(dict(self.headers), body))
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, headers: dict[str, str], body: bytes) -> int:
        received = Received({name.lower(): value for name, value in headers.items()}, body)
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError as refused:
                received.errors.append(str(refused))
            else:
                received.verified_with.append(secret)
        with self.lock:
            self.received.append(received)
            if not received.verified_with:
                return 400
            received.repeat = received.webhook_id in self.accepted_ids
            if self.status < 300:
                self.accepted_ids.add(received.webhook_id)
            return self.status

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def post(url: str, headers: dict[str, str], body: bytes) -> int:
    """Send a captured request again (an attacker replaying it): the status it got."""
    kept = {name: value for name, value in headers.items()
            if name.startswith("webhook-") or name == "content-type"}
    request = urllib.request.Request(url, data=body, method="POST", headers=kept)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code
