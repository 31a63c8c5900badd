"""Fakes at the process edge only: an HTTP transport under the real Twilio client, and a local
HTTP server standing in for a webhook receiver."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from twilio.http import HttpClient
from twilio.http.response import Response


class FakeTwilioTransport(HttpClient):
    """Answers like Twilio's Messages API; `mode` switches between up, 500s and timeouts."""

    def __init__(self):
        super().__init__(logger=None, is_async=False)
        self.mode = "up"
        self.sent: list[dict] = []
        self.calls = 0

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False):
        self.calls += 1
        if self.mode == "timeout":
            raise TimeoutError("read timed out")
        if self.mode == "500":
            return Response(500, json.dumps({"code": 20500, "message": "Internal Server Error",
                                             "status": 500}))
        if self.mode == "400":
            return Response(400, json.dumps({"code": 21211, "message": "Invalid 'To'",
                                             "status": 400}))
        message = {"sid": f"SM{len(self.sent) + 1:032d}", "to": data["To"],
                   "from": data["From"], "body": data["Body"], "status": "queued"}
        self.sent.append(message)
        return Response(201, json.dumps(message))


class WebhookReceiver:
    """A local HTTP server recording each request's body and headers."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def form(data) -> dict:
    return {key: values[0] for key, values in parse_qs(data).items()}
