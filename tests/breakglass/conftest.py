import pytest

from breakglass import services
from breakglass.models import Scope


@pytest.fixture
def app_token(db) -> str:
    """A token of an application holding every scope."""
    return services.create_application("pager", list(Scope.values), actor=None)[1]
