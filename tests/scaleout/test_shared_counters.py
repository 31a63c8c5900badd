"""Counters every node must share: the cache is Redis when REDIS_URL is set, else the
database (whose table `migrate` creates), never one process's memory; the throttles then
count one client's requests together whichever process answers them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test import Client

from tests.scaleout.servers import redis_server

ROOT = Path(__file__).resolve().parents[2]


def cache_settings(**env: str) -> dict:
    """CACHES as config.settings builds it from this environment."""
    environment = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    environment.update(ENVIRONMENT="test", **env)
    output = subprocess.run(
        [sys.executable, "-c", "import json, config.settings as s; print(json.dumps(s.CACHES))"],
        cwd=ROOT, env=environment, capture_output=True, text=True, check=True).stdout
    return json.loads(output)["default"]


def test_the_cache_is_the_database_without_redis_and_redis_with_it():
    assert cache_settings()["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    with_redis = cache_settings(REDIS_URL="redis://127.0.0.1:6390/0")
    assert with_redis["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert with_redis["LOCATION"] == "redis://127.0.0.1:6390/0"


DATABASE_CACHE = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                               "LOCATION": "breakglass_cache"}}


@pytest.mark.django_db
def test_migrate_creates_the_database_caches_table(settings):
    settings.CACHES = DATABASE_CACHE
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS breakglass_cache")
    call_command("migrate", verbosity=0)
    assert "breakglass_cache" in connection.introspection.table_names()


@pytest.fixture(params=["database", "redis"])
def shared_cache(request, settings):
    if request.param == "database":
        settings.CACHES = DATABASE_CACHE
        call_command("migrate", verbosity=0)  # creates the cache's table
        yield
    else:
        with redis_server() as url:
            settings.CACHES = {"default": {"BACKEND":
                                           "django.core.cache.backends.redis.RedisCache",
                                           "LOCATION": url}}
            yield


@pytest.mark.django_db
def test_the_api_throttle_counts_in_the_shared_cache(shared_cache, settings):
    settings.API_TOKEN_FAILURE_LIMIT = 3
    answers = [Client().get("/api/v1/grants", HTTP_AUTHORIZATION="Bearer bg_wrong_token",
                            REMOTE_ADDR="198.51.100.7").status_code for _ in range(5)]
    assert answers == [401, 401, 401, 429, 429]
    # The count lives in the shared cache, where another node's process reads it.
    assert caches["default"].get("api-auth-failures:198.51.100.7") == 3
