"""Settings for the test suite: the real settings with a test environment and inline tasks."""

import os

os.environ.setdefault("ENVIRONMENT", "test")
os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-the-checks-0123456789")
os.environ.setdefault("SMS_BACKEND", "locmem")

from config.settings import *  # noqa: F403
from config.settings import Q_CLUSTER

# django-q2 reads Q_CLUSTER once at import, so the test switch lives here, not in
# override_settings: tasks run inline in the calling thread.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}

# One process: the per-address counters may live in its memory, which spares every test a
# database round trip to clear them (tests/conftest.py). The shared caches have their own
# tests (tests/scaleout/).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Hashing demo passwords with the production hasher would dominate the suite's run time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The same for Argon2id: recovery passphrases in tests are derived with the minimum limits
# (production keeps recovery.crypto's defaults, which are stored with each enrolment).
RECOVERY_ARGON2_OPSLIMIT = 1
RECOVERY_ARGON2_MEMLIMIT = 8192
