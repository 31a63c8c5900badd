"""Settings for serving the app under gunicorn in the benchmarks: the real settings with two
baseline views added to the URLs (bench/web_urls.py)."""

import os

os.environ.setdefault("ENVIRONMENT", "development")
os.environ.setdefault("LOG_LEVEL", "WARNING")

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.web_urls"
# The baselines are open like the API is (which authenticates by token instead of session).
PUBLIC_URLS = PUBLIC_URLS | {"bench-one-query", "bench-one-insert"}  # noqa: F405
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
