"""The website the custody and drill tests share: example.org, managed by bob, an
administrator (a module may define its own `website` instead)."""

import pytest

from tests.conftest import example_website
from tests.security_review.website_cast import administrator


@pytest.fixture
def bob(db):
    return administrator("bob")


@pytest.fixture
def website(bob):
    return example_website(bob)
