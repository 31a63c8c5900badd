"""What /api/ answers outside the operations of api/main.py (config/urls.py routes every other
path under /api/ here): a problem type's description at its URI, and a JSON 404 for the rest,
never Django's HTML page."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from api.errors import KINDS, PROBLEM_TYPE_BASE, problem_response


@csrf_exempt  # Any method gets its 404; nothing here reads or changes state.
def outside_the_operations(request: HttpRequest) -> HttpResponse:
    kind = request.path.removeprefix(PROBLEM_TYPE_BASE)
    if request.path.startswith(PROBLEM_TYPE_BASE) and kind in KINDS:
        if request.method not in {"GET", "HEAD"}:
            return problem_response("method-not-allowed", f"{request.method} is not allowed "
                                    "here; use GET.", headers={"Allow": "GET, HEAD"})
        status, title = KINDS[kind]
        return JsonResponse({"type": request.path, "title": title, "status": status})
    return problem_response("not-found", f"Nothing at {request.path[:200]!r}: see "
                            "/api/v1/docs for the operations.")
