from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from breakglass import services
from breakglass.access import access_by_group, decide
from breakglass.forms import BreakGlassForm, BreakGlassUsersForm, EndAccessForm
from breakglass.models import Grant, Group


def _is_reviewer(user) -> bool:
    return user.is_superuser or User.objects.security_reviewers().filter(pk=user.pk).exists()


@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    groups = Group.objects.all()
    if query:
        groups = groups.filter(Q(name__icontains=query) | Q(description__icontains=query)
                               | Q(slug__icontains=query))
    user = request.user
    access = access_by_group(user)
    owned = set(user.owned_groups.values_list("pk", flat=True))
    can_break = set(user.break_glass_groups.values_list("pk", flat=True))
    rows = [
        {"group": group, "access": access.get(group.pk), "owner": group.pk in owned,
         "can_break_glass": group.pk in can_break}
        for group in groups
    ]
    return render(request, "breakglass/catalog.html", {"rows": rows, "query": query})


@require_GET
def group_detail(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(Group, slug=slug)
    return _render_group(request, group, BreakGlassForm())


def _render_group(request, group: Group, form, status: int = 200) -> HttpResponse:
    user = request.user
    is_owner = group.owners.filter(pk=user.pk).exists()
    may_see_grants = is_owner or _is_reviewer(user)
    context = {
        "group": group,
        "form": form,
        "decision": decide(user, group),
        "can_break_glass": group.break_glass_users.filter(pk=user.pk).exists(),
        "my_grant": Grant.objects.active().filter(user=user, group=group).first(),
        "is_owner": is_owner,
        "owners": group.owners.order_by("username"),
        "contains": group.contains.order_by("name"),
        "active_grants": (Grant.objects.active().filter(group=group).select_related("user")
                          if may_see_grants else None),
        "users_form": BreakGlassUsersForm(initial={"users": group.break_glass_users.all()})
        if is_owner else None,
    }
    return render(request, "breakglass/group_detail.html", context, status=status)


@require_POST
def break_glass(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(Group, slug=slug)
    form = BreakGlassForm(request.POST)
    if not form.is_valid():
        return _render_group(request, group, form, status=400)
    try:
        grant = services.break_glass(
            group, actor=request.user, request=request, **form.cleaned_data
        )
    except services.BreakGlassRefused as refused:
        raise PermissionDenied(str(refused)) from refused
    except services.InvalidInput as invalid:
        form.add_error(invalid.field, str(invalid))
        return _render_group(request, group, form, status=400)
    messages.success(
        request, f"You have access to {group.name} until {grant.expires_at:%H:%M} UTC. "
        "Security reviewers and the owners have been alerted.",
    )
    return redirect("breakglass:my-access")


@require_POST
def manage_break_glass_users(request: HttpRequest, slug: str) -> HttpResponse:
    group = get_object_or_404(Group, slug=slug)
    if not group.owners.filter(pk=request.user.pk).exists():
        raise PermissionDenied("Only the group's owners manage its break-glass users.")
    form = BreakGlassUsersForm(request.POST)
    if form.is_valid():
        services.set_break_glass_users(group, list(form.cleaned_data["users"]),
                                       actor=request.user, request=request)
        messages.success(request, "Break-glass users saved.")
        return redirect("breakglass:group-detail", slug=group.slug)
    return _render_group(request, group, BreakGlassForm(), status=400)


@require_GET
def my_access(request: HttpRequest) -> HttpResponse:
    grants = Grant.objects.filter(user=request.user).select_related("group", "ended_by")
    active = [grant for grant in grants.active()]
    history = grants.exclude(pk__in=[grant.pk for grant in active])[:50]
    return render(request, "breakglass/my_access.html", {"active": active, "history": history})


@require_POST
def end_grant(request: HttpRequest, grant_id: int) -> HttpResponse:
    grant = services.visible_grants(request.user).filter(pk=grant_id).first()
    if grant is None:
        raise Http404("No such grant.")
    if not services.can_end(request.user, grant):
        raise PermissionDenied("You cannot end this grant.")
    form = EndAccessForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        services.revoke_grant(grant, actor=request.user, reason=reason, request=request)
    except services.GrantError as error:
        messages.warning(request, f"Nothing to end: {error}.")
        return _back(request, grant)
    messages.success(request, f"Access of {grant.user} to {grant.group.name} has ended.")
    return _back(request, grant)


def _back(request, grant: Grant) -> HttpResponse:
    if request.user.pk == grant.user_id:
        return redirect("breakglass:my-access")
    return redirect("breakglass:group-detail", slug=grant.group.slug)
