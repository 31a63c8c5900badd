"""Gunicorn settings for Breakglass (deploy/breakglass-web.service runs
`gunicorn -c deploy/gunicorn.conf.py config.wsgi`). Each value can be changed from the
environment without editing this file; options given on gunicorn's command line win over both.
"""

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
proc_name = "breakglass"

# Threads, not the sync worker. A sync worker serves the request in the same loop that tells
# the arbiter it is alive, so a response that streams for longer than `timeout` (a 1 GB
# emergency backup over a slow link) stops the heartbeat and the arbiter kills the worker in
# the middle of the download. gthread's main loop keeps beating while a thread streams, and
# `timeout` keeps its real job: replacing a worker whose loop is stuck.
worker_class = "gthread"
workers = _int("GUNICORN_WORKERS", max(2, len(os.sched_getaffinity(0))))
threads = _int("GUNICORN_THREADS", 4)
timeout = _int("GUNICORN_TIMEOUT", 30)
# A stopping or recycled worker (systemctl stop/restart, max_requests below) finishes its
# downloads for up to this long before it is closed; TimeoutStopSec in the unit is longer.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 600)
# Behind a reverse proxy that reuses its connections to us.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then (memory), spread out so that they never restart together.
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)

# Gunicorn's own defaults, stated: a request line, its headers and each header's size. Bodies
# are limited by Django (DATA_UPLOAD_MAX_MEMORY_SIZE).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# The addresses whose X-Forwarded-Proto gunicorn believes: none unless set. The app decides
# the scheme and the client address itself (TRUSTED_PROXY_COUNT, SECURE_PROXY_SSL_HEADER), so
# one setting, not two, says which proxy is trusted.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")

# No access log here: the app writes its own JSON line per request (with its request id).
# Errors and start/stop messages go to stderr, which systemd sends to the journal.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Gunicorn's control socket would let any process of this user resize or stop the server;
# systemd manages it instead.
control_socket_disable = True
