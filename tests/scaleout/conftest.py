import itertools

import pytest

from tests.scaleout.servers import redis_server, s3_server

_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3, settings) -> str:
    """A fresh bucket, and the settings that store archives and checkpoints in it."""
    name = s3.create_bucket(f"breakglass-test-{next(_buckets)}")
    settings.STORAGES = {**settings.STORAGES, **s3.storages(name)}
    settings.S3_UPLOAD_PART_BYTES = 5 * 1024 * 1024  # S3's smallest part but the last
    return name


@pytest.fixture(scope="session")
def redis_url():
    with redis_server() as url:
        yield url
