"""A local HTTP server standing in for Slack's Web API under the real slack_sdk.WebClient
(SLACK_API_URL points at it): it answers chat.postMessage, chat.update, chat.postEphemeral,
views.open and users.info as Slack documents them, and records every call."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeSlack:
    def __init__(self):
        self.calls: list[tuple[str, dict, dict]] = []  # (method, arguments, headers)
        self.users: dict[str, dict] = {}  # users.info answers, by Slack user id
        self.failures: list[tuple[int, dict, dict]] = []  # next answers: status, body, headers
        self.posted = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.answer(self, dict(parse_qs(urlsplit(self.path).query)))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    fake.answer(self, json.loads(body or "{}"))
                else:
                    fake.answer(self, dict(parse_qs(body)))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, arguments: dict) -> None:
        arguments = {key: value[0] if isinstance(value, list) and len(value) == 1
                     and key not in ("blocks",) else value for key, value in arguments.items()}
        method = urlsplit(handler.path).path.rsplit("/", 1)[-1]
        self.calls.append((method, arguments, dict(handler.headers)))
        status, body, headers = (self.failures.pop(0) if self.failures
                                 else (200, self.result(method, arguments), {}))
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def result(self, method: str, arguments: dict) -> dict:
        if method == "chat.postMessage":
            self.posted += 1
            ts = f"1700000000.{self.posted:06d}"
            return {"ok": True, "channel": arguments["channel"], "ts": ts,
                    "message": {"type": "message", "ts": ts, "blocks": arguments.get("blocks")}}
        if method == "chat.update":
            return {"ok": True, "channel": arguments["channel"], "ts": arguments["ts"]}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": "1700000001.000001"}
        if method == "views.open":
            return {"ok": True, "view": {"id": "VNHU13V36"}}
        if method == "users.info":
            user = self.users.get(arguments.get("user"))
            return {"ok": True, "user": user} if user else {"ok": False,
                                                             "error": "user_not_found"}
        return {"ok": False, "error": "unknown_method"}

    def made(self, method: str) -> list[dict]:
        return [arguments for name, arguments, _ in self.calls if name == method]
