"""Send code on /emergency/: median answer time for a known address against an unknown one,
through the whole view (Django's test client, the served settings, a throwaway database). The
two must not be told apart (QUALITY Q6): the ratio should be close to 1.0.

Known and unknown requests alternate, so drift hits both alike; the known website's sending
limits are reset between requests (outside the timing) so that every known request sends.

    .venv/bin/python bench/emergency_page_timing.py
    DATABASE_URL=postgres://... .venv/bin/python bench/emergency_page_timing.py  # scratch db!
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["EMERGENCY_PAGE_REQUESTS_PER_MINUTE"] = "1000000"
# The served settings, not the test ones: tasks are queued as in production, not run inline.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.web_settings")

from bench._setup import throwaway_database

ROUNDS = 300
WARMUP = 20


def timed_post(client, address: str) -> float:
    from django.urls import reverse

    started = time.perf_counter()
    response = client.post(reverse("emergency:start"), {"address": address})
    elapsed = time.perf_counter() - started
    assert response.status_code == 302, response.status_code
    return elapsed


def measure() -> tuple[float, float]:
    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    from accounts.models import User
    from backups.models import EmergencyChallenge, Website

    Website.objects.create(
        name="Example", address="example.org", emergency_enabled=True,
        manager=User.objects.create_user("bob", email="bob@example.com"),
        verification_email="owner@example.org", verification_mobile="+15555550100")
    client = Client()
    known, unknown = [], []
    for round_ in range(WARMUP + ROUNDS):
        EmergencyChallenge.objects.update(created_at=timezone.now() - timedelta(days=2))
        pair = (timed_post(client, "example.org"), timed_post(client, f"x{round_}.example"))
        if round_ >= WARMUP:
            known.append(pair[0])
            unknown.append(pair[1])
    return statistics.median(known), statistics.median(unknown)


if __name__ == "__main__":
    with throwaway_database() as vendor:
        known, unknown = measure()
    print(f"{vendor}: Send code median, known {known * 1000:.1f} ms, unknown "
          f"{unknown * 1000:.1f} ms, ratio unknown/known {unknown / known:.2f}")
