import pytest

from breakglass.models import Scope
from breakglass.services.applications import create_application


@pytest.fixture
def app_token(db) -> str:
    """A token of an application holding every scope."""
    return create_application("pager", list(Scope.values), actor=None)[1]
