"""The one NinjaAPI, mounted at /api/v1/ by config/urls.py: each app's router under its
prefix, every operation behind the bearer-token check."""

from ninja import NinjaAPI, Swagger

from api.auth import TokenAuth
from api.errors import add_exception_handlers
from breakglass.api import router as breakglass_router
from oncall.api import router as schedules_router
from recovery.api import router as recovery_router
from risk.api import router as incidents_router

api = NinjaAPI(
    title="Breakglass API", version="1", urls_namespace="api", auth=TokenAuth(),
    docs_url="/docs", openapi_url="/openapi.json",
    # Swagger UI from ninja's own static files; no call to the online validator either.
    docs=Swagger(settings={"validatorUrl": None}),
    description="Check access, break glass, revoke grants and export the audit trail.",
)
add_exception_handlers(api)

api.add_router("", breakglass_router)
api.add_router("/schedules", schedules_router)
api.add_router("/recovery", recovery_router)
api.add_router("/incidents", incidents_router)
