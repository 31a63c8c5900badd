from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.services import (
    SecondFactorThrottled,
    note_step_up,
    passkeys_of,
    stepped_up_at,
    verify_second_factor,
)
from breakglass.access import access_by_group, decide
from breakglass.forms import (
    BreakGlassForm,
    BreakGlassUsersForm,
    DecisionForm,
    EndAccessForm,
    ExtensionForm,
    RequestAccessForm,
    RequestSettingsForm,
)
from breakglass.models import AccessRequest, Grant, Group
from breakglass.outlook import panel_outlooks
from breakglass.services import break_glass as glass
from breakglass.services import connectors, grants, groups
from breakglass.services import requests as access_requests
from breakglass.services.errors import (
    BreakGlassRefused,
    GrantError,
    InvalidInput,
    NotAllowed,
    StepUpRequired,
)
from breakglass.timeline import grant_timeline_items
from review.services import blocking_review
from risk.anomalies import describe as describe_flags
from risk.rules import RiskRefused


def _is_reviewer(user) -> bool:
    return user.is_superuser or user.is_security_reviewer


@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    shown = Group.objects.all()
    if query:
        shown = shown.filter(Q(name__icontains=query) | Q(description__icontains=query)
                               | Q(slug__icontains=query))
    user = request.user
    access = access_by_group(user)
    owned = set(user.owned_groups.values_list("pk", flat=True))
    can_break = set(user.break_glass_groups.values_list("pk", flat=True))
    rows = [
        {"group": group, "access": access.get(group.pk), "owner": group.pk in owned,
         "can_break_glass": group.pk in can_break}
        for group in shown
    ]
    return render(request, "breakglass/catalog.html", {"rows": rows, "query": query})


@require_GET
def group_detail(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(Group, slug=slug)
    return _render_group(request, group, BreakGlassForm(group))


def _render_group(request, group: Group, form, status: int = 200, *, request_form=None,
                  settings_form=None) -> HttpResponse:
    user = request.user
    is_owner = group.owners.filter(pk=user.pk).exists()
    may_see_grants = is_owner or _is_reviewer(user)
    can_break_glass = group.break_glass_users.filter(pk=user.pk).exists()
    my_grant = Grant.objects.active().filter(user=user, group=group).first()
    context = {
        "group": group,
        "form": form,
        # A passkey may give the step-up instead of a typed code (accounts/passkeys.py).
        "has_passkey": can_break_glass and passkeys_of(user).exists(),
        "request_form": request_form or (RequestAccessForm(group) if group.requestable
                                         else None),
        "my_request": AccessRequest.objects.filter(
            requester=user, group=group, kind=AccessRequest.Kind.ACCESS,
            status=AccessRequest.Status.PENDING).first(),
        "settings_form": settings_form or (RequestSettingsForm(instance=group) if is_owner
                                           else None),
        "pending_requests": (group.access_requests.filter(status=AccessRequest.Status.PENDING)
                             .select_related("requester") if may_see_grants else None),
        "decision": decide(user, group),
        "outlook": (panel_outlooks(group, form, extending=my_grant is not None)
                    if can_break_glass else None),
        "linked_incidents": group.incidents.exclude(status="resolved"),
        "blocking_review": (blocking_review(group=group) if group.review_before_next
                            else None),
        "can_break_glass": can_break_glass,
        "my_grant": my_grant,
        "is_owner": is_owner,
        "owners": group.owners.order_by("username"),
        "contains": group.contains.order_by("name"),
        "active_grants": (Grant.objects.active().filter(group=group).select_related("user")
                          if may_see_grants else None),
        "users_form": BreakGlassUsersForm(initial={"users": group.break_glass_users.all()})
        if is_owner else None,
    }
    return render(request, "breakglass/group_detail.html", context, status=status)


def _step_up(request: HttpRequest, form) -> bool:
    """Verify the form's one-time code, if one was typed; False (with the error on the form)
    when it is wrong. A right code counts as a step-up for the next 5 minutes."""
    code = form.cleaned_data.pop("code", "")
    if not code:
        return True
    try:
        accepted = verify_second_factor(request.user, code, request=request)
    except SecondFactorThrottled:
        form.add_error("code", "Too many wrong codes: wait a moment, then try again.")
        return False
    if accepted is None:
        form.add_error("code", "That code is not right. Enter a fresh one from your "
                               "authenticator.")
        return False
    note_step_up(request)
    return True


@require_POST
def break_glass(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(Group, slug=slug)
    form = BreakGlassForm(group, request.POST)
    if not form.is_valid() or not _step_up(request, form):
        return _render_group(request, group, form, status=400)
    try:
        grant = glass.break_glass(
            group, actor=request.user, request=request, stepped_up_at=stepped_up_at(request),
            **form.cleaned_data
        )
    except StepUpRequired as refused:
        form.add_error("code", str(refused))
        return _render_group(request, group, form, status=403)
    except BreakGlassRefused as refused:
        if not group.break_glass_users.filter(pk=request.user.pk).exists():
            raise PermissionDenied(str(refused)) from refused
        form.add_error(None, str(refused))
        return _render_group(request, group, form, status=403)
    except InvalidInput as invalid:
        form.add_error(invalid.field if invalid.field in form.fields else None, str(invalid))
        return _render_group(request, group, form, status=400)
    flagged = grant.risk.get("flags")
    messages.success(
        request, f"You have access to {group.name} until {grant.expires_at:%H:%M} UTC. "
        "Security reviewers and the owners have been alerted"
        + (" at high priority (flagged: " + ", ".join(describe_flags(flagged)) + ")."
           if flagged else "."),
    )
    return redirect("breakglass:my-access")


@require_POST
def manage_break_glass_users(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(Group, slug=slug)
    if not groups.may_manage(request.user, group):
        raise PermissionDenied("Only the group's owners manage its break-glass users.")
    form = BreakGlassUsersForm(request.POST)
    if form.is_valid():
        try:
            groups.set_break_glass_users(group, list(form.cleaned_data["users"]),
                                         actor=request.user, request=request)
        except NotAllowed as refused:
            raise PermissionDenied(str(refused)) from refused
        messages.success(request, "Break-glass users saved.")
        return redirect("breakglass:group-detail", slug=group.slug)
    return _render_group(request, group, BreakGlassForm(group), status=400)


@require_GET
def my_access(request: HttpRequest) -> HttpResponse:
    held = Grant.objects.filter(user=request.user).select_related("group", "ended_by")
    active = list(held.active())
    for grant in active:
        grant.extension_form = (ExtensionForm(grant.group) if grant.group.requestable
                                else None)
    history = held.exclude(pk__in=[grant.pk for grant in active]).exclude(
        status=Grant.Status.REQUESTED)[:50]
    mine = (AccessRequest.objects.filter(requester=request.user,
                                         status=AccessRequest.Status.PENDING)
            .select_related("group"))
    history = list(history)
    pending = connectors.pending_by_grant([grant.pk for grant in [*active, *history]])
    for grant in [*active, *history]:
        grant.pending_on = pending.get(grant.pk, [])
    context = {"active": active, "history": history,
               "pending_revocations": list(connectors.pending_revocations(user=request.user)),
               "my_requests": [item for item in mine
                               if item.effective_status() == AccessRequest.Status.PENDING],
               "waiting": list(access_requests.waiting_for(request.user))}
    return render(request, "breakglass/my_access.html", context)


@require_POST
def end_grant(request: HttpRequest, grant_id: int) -> HttpResponse:
    grant = grants.visible_grants(request.user).filter(pk=grant_id).first()
    if grant is None:
        raise Http404("No such grant.")
    form = EndAccessForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        grants.revoke_grant(grant, actor=request.user, reason=reason, request=request)
    except NotAllowed as refused:
        raise PermissionDenied(str(refused)) from refused
    except GrantError as error:
        messages.warning(request, f"Nothing to end: {error}.")
        return _back(request, grant)
    messages.success(request, f"Access of {grant.user} to {grant.group.name} has ended.")
    return _back(request, grant)


def _back(request, grant: Grant) -> HttpResponse:
    if request.user.pk == grant.user_id:
        return redirect("breakglass:my-access")
    return redirect("breakglass:group-detail", slug=grant.group.slug)


@require_POST
def request_access(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(Group, slug=slug)
    form = RequestAccessForm(group, request.POST)
    if not form.is_valid() or not _step_up(request, form):
        return _render_group(request, group, BreakGlassForm(group), status=400, request_form=form)
    try:
        access_request = access_requests.request_access(
            group, actor=request.user, request=request,
            stepped_up_at=stepped_up_at(request), **form.cleaned_data)
    except RiskRefused as refused:
        form.add_error("code" if refused.decision.needs_code else None, str(refused))
        return _render_group(request, group, BreakGlassForm(group), status=403,
                             request_form=form)
    except InvalidInput as invalid:
        form.add_error(invalid.field if invalid.field in form.fields else None, str(invalid))
        return _render_group(request, group, BreakGlassForm(group), status=400, request_form=form)
    except GrantError as error:
        form.add_error(None, str(error))
        return _render_group(request, group, BreakGlassForm(group), status=error.status,
                             request_form=form)
    if access_request.status == AccessRequest.Status.APPROVED:
        messages.success(request, f"Approved at once: {access_request.auto_rule}.")
        return redirect("breakglass:my-access")
    messages.success(request, "Requested. The owners have been alerted.")
    return redirect("breakglass:request-detail", request_id=access_request.pk)


@require_POST
def request_settings(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(Group, slug=slug)
    if not groups.may_manage(request.user, group):
        raise PermissionDenied("Only the group's owners change its request settings.")
    form = RequestSettingsForm(request.POST, instance=Group.objects.get(pk=group.pk))
    if not form.is_valid():
        return _render_group(request, group, BreakGlassForm(group), status=400, settings_form=form)
    try:
        changed = access_requests.set_request_settings(group, form.cleaned_data,
                                                       actor=request.user, request=request)
    except NotAllowed as refused:
        raise PermissionDenied(str(refused)) from refused
    messages.success(request, "Request settings saved." if changed else "Nothing changed.")
    return redirect("breakglass:group-detail", slug=group.slug)


def _visible_request(request, request_id: int) -> AccessRequest:
    access_request = (access_requests.visible_requests(request.user)
                      .select_related("group", "requester", "grant", "decided_by")
                      .filter(pk=request_id).first())
    if access_request is None:
        raise Http404("No such request.")
    return access_request


def _render_request(request, access_request: AccessRequest, *, form=None, error: str = "",
                    status: int = 200) -> HttpResponse:
    user = request.user
    effective = access_request.effective_status()
    approvals = list(access_request.approvals.select_related("approver"))
    is_owner = access_request.group.owners.filter(pk=user.pk).exists()
    may_decide = (effective == AccessRequest.Status.PENDING and is_owner
                  and user.pk != access_request.requester_id
                  and all(approval.approver_id != user.pk for approval in approvals))
    context = {
        "access_request": access_request,
        "effective_status": effective,
        "approvals": approvals,
        "may_decide": may_decide,
        "own_request": user.pk == access_request.requester_id,
        "may_withdraw": (user.pk == access_request.requester_id
                         and effective == AccessRequest.Status.PENDING),
        "form": form or DecisionForm(),
        "error": error,
    }
    return render(request, "breakglass/request_detail.html", context, status=status)


@require_GET
def request_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    return _render_request(request, _visible_request(request, request_id))


@require_POST
def decide_request(request: HttpRequest, request_id: int, decision: str) -> HttpResponse:
    access_request = _visible_request(request, request_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _render_request(request, access_request, form=form, status=400)
    comment = form.cleaned_data["comment"]
    try:
        if decision == "approve":
            access_requests.approve_request(access_request, actor=request.user, comment=comment,
                                    request=request)
        elif decision == "deny":
            access_requests.deny_request(access_request, actor=request.user, comment=comment,
                                 request=request)
        else:
            access_requests.withdraw_request(access_request, actor=request.user, reason=comment,
                                     request=request)
    except InvalidInput as invalid:
        form.add_error("comment", str(invalid))
        return _render_request(request, access_request, form=form, status=400)
    except GrantError as error:
        access_request.refresh_from_db()
        return _render_request(request, access_request, form=form, error=str(error),
                               status=error.status)
    messages.success(request, {"approve": "Approved.", "deny": "Denied; the requester is told.",
                               "withdraw": "Withdrawn."}[decision])
    return redirect("breakglass:request-detail", request_id=access_request.pk)


@require_POST
def request_extension(request: HttpRequest, grant_id: int) -> HttpResponse:
    grant = Grant.objects.select_related("group").filter(pk=grant_id, user=request.user).first()
    if grant is None:
        raise Http404("No such grant.")
    form = ExtensionForm(grant.group, request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a duration" + (
            " and give a reason." if grant.group.request_reason_required else "."))
        return redirect("breakglass:my-access")
    try:
        access_request = access_requests.request_extension(
            grant, actor=request.user, request=request, **form.cleaned_data)
    except GrantError as error:
        messages.error(request, str(error))
        return redirect("breakglass:my-access")
    if access_request.status == AccessRequest.Status.APPROVED:
        messages.success(request, f"Extended at once: {access_request.auto_rule}.")
        return redirect("breakglass:my-access")
    messages.success(request, "More time requested. The owners have been alerted.")
    return redirect("breakglass:request-detail", request_id=access_request.pk)


@require_GET
def grant_timeline(request: HttpRequest, grant_id: int) -> HttpResponse:
    """One grant's story in order: request and approvals, activation and extensions, the
    alerts delivered, the actions systems reported under it, its end. For its holder, the
    group's owners and reviewers (others get 404)."""
    grant = (grants.visible_grants(request.user).select_related("group", "user", "ended_by")
             .filter(pk=grant_id).first())
    if grant is None:
        raise Http404("No such grant.")
    items = grant_timeline_items(grant)
    return render(request, "breakglass/grant_timeline.html", {
        "grant": grant, "items": items,
        "pending_revocations": list(connectors.pending_revocations(grant=grant))})
