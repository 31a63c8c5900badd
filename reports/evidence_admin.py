"""The admin's evidence pack button: the printable page inline, or the JSON as a download.
Meant to be served through the admin site's admin_view (staff verified by a second factor);
the view checks staff and permission again so it is safe wherever it is routed."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.decorators.http import require_GET

from audit.admin import refuse
from reports.evidence import SUBJECT_MODELS, build_pack, pack_html, pack_json, record_export

FORMATS = ("html", "json")


def may_export_evidence(user) -> bool:
    verified = getattr(user, "is_verified", None)
    return bool(user.is_active and user.is_staff and verified and verified()
                and user.has_perm("audit.view_auditevent"))


# The printable page keeps its style inline so it stands alone once saved; the nonce lets
# that one style element through the site's policy, which otherwise allows none.
@csp_override({**settings.SECURE_CSP, "style-src": [CSP.SELF, CSP.NONCE]})
@require_GET
def evidence_view(request: HttpRequest, kind: str, object_id: int, fmt: str) -> HttpResponse:
    if not may_export_evidence(request.user):
        if not request.user.is_authenticated:
            raise PermissionDenied("Exporting evidence needs staff access to the audit trail.")
        refuse(request, "exporting an evidence pack (it needs the audit trail's view "
                        "permission)", view="evidence", kind=kind, object=object_id)
    if kind not in SUBJECT_MODELS or fmt not in FORMATS:
        raise Http404("No such evidence pack.")
    subject = SUBJECT_MODELS[kind].objects.filter(pk=object_id).first()
    if subject is None:
        raise Http404(f"No {kind} #{object_id}.")
    pack = build_pack(**{kind: subject})
    filename = f"evidence-{kind}-{subject.pk}.{fmt}"
    if fmt == "json":
        response = HttpResponse(pack_json(pack), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    else:
        response = HttpResponse(pack_html(pack, request=request))
    record_export(subject, pack, actor=request.user, files=[filename], request=request)
    return response
