"""scim2-server's storage over our models: SCIM Users are accounts, SCIM Groups are directory
groups. This module translates between SCIM resources and rows; every write goes through
scim/services.py."""

import hashlib
import json
from typing import Any

from django.db import transaction
from django.db.models import Prefetch
from django.http import HttpRequest
from scim2_models import (
    Context,
    InvalidValueException,
    Meta,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    Schema,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
)
from scim2_server.storage import ScimStorage, SearchPage
from scim2_server.utils import load_default_resource_types, load_json_resource

from accounts.models import DirectoryGroup, User
from breakglass.models import Application
from scim import services
from scim.models import ScimResource

MAX_RESULTS = 200
# Never accepted, so never published: a password (single sign-on only, and no secret in our
# tables), and roles or entitlements (a directory must not be able to grant any).
LEFT_OUT_ATTRIBUTES = {"password", "roles", "entitlements"}
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
# Read from the account or group itself. `active` and `members` are also kept as sent: a
# removed `active` reads as unset (the account stays as it is), and a member keeps the
# display name the directory gave it.
USER_COLUMNS = {"id", "meta", "userName", "externalId", "groups"}
GROUP_COLUMNS = {"id", "meta", "displayName", "externalId", "members"}


def build_provider() -> ScimProvider:
    """RFC 7643's User (with the enterprise extension) and Group, less the attributes left
    out; bulk operations and password changes are not offered."""
    schemas = load_json_resource("default-schemas.json")
    for schema in schemas:
        if schema["id"] == CORE_USER:
            schema["attributes"] = [attribute for attribute in schema["attributes"]
                                    if attribute["name"] not in LEFT_OUT_ATTRIBUTES]
    config = ServiceProviderConfig.model_validate({
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token", "primary": True,
            "description": "The token of a Breakglass API application with the scim:write "
                           "scope, in the Authorization header."}],
    })
    return ScimProvider.from_discovery(
        [Schema.model_validate(schema) for schema in schemas],
        load_default_resource_types().values(), config=config)


class DjangoStorage(ScimStorage):
    """One per request: writes are recorded with the calling application as their actor."""

    def __init__(self, provider: ScimProvider, *, actor: Application,
                 request: HttpRequest | None = None):
        self.provider = provider
        self.actor = actor
        self.request = request

    def operation(self):
        return transaction.atomic()

    def get(self, resource_type: ResourceType, resource_id: str, *,
            response_parameters: ResponseParameters | None = None) -> Resource:
        row = self._row(resource_type, resource_id)
        return self._resource(resource_type, row)

    def search(self, resource_types: list[ResourceType], search_request: SearchRequest, *,
               position: Any = None) -> SearchPage:
        # Filtered in Python: a break-glass deployment has hundreds of accounts, not millions.
        found = [self._resource(resource_type, row)
                 for resource_type in resource_types for row in self._rows(resource_type)]
        if search_request.filter is not None:
            found = [resource for resource in found if search_request.filter.match(resource)]
        found = search_request.sort(found)
        page = found[search_request.start_index_0:search_request.stop_index_0]
        return SearchPage(len(found), page)

    def create(self, resource_type: ResourceType, resource: Resource) -> Resource:
        if resource_type.name == "User":
            fields = account_fields(resource)
            fields.attributes["active"] = True  # set, whether sent or not: it starts active
            row = services.create_account(fields, actor=self.actor, request=self.request)
        else:
            row = services.create_group(group_fields(resource), actor=self.actor,
                                        request=self.request)
        return self.get(resource_type, str(row.pk))

    @transaction.atomic
    def update(self, resource_type: ResourceType, resource: Resource, *,
               expected_version: str | None = None) -> Resource:
        row, current = self._locked(resource_type, resource.id, expected_version)
        if resource_type.name == "User":
            services.update_account(row, account_fields(resource), actor=self.actor,
                                    published=account_fields(current).attributes,
                                    request=self.request)
        else:
            services.update_group(row, group_fields(resource), actor=self.actor,
                                  published=group_fields(current).attributes,
                                  request=self.request)
        return self.get(resource_type, str(row.pk))

    @transaction.atomic
    def delete(self, resource_type: ResourceType, resource_id: str, *,
               expected_version: str | None = None) -> None:
        row, _ = self._locked(resource_type, resource_id, expected_version)
        if resource_type.name == "User":
            services.delete_account(row, actor=self.actor, request=self.request)
        else:
            services.delete_group(row, actor=self.actor, request=self.request)

    # --- Rows ---------------------------------------------------------------------------------

    def _rows(self, resource_type: ResourceType):
        if resource_type.name == "User":
            rows = User.objects.select_related("scim_resource").prefetch_related(
                Prefetch("directory_groups", DirectoryGroup.objects.filter(
                    scim_resource__deleted_at__isnull=True)))
        else:
            rows = DirectoryGroup.objects.select_related("scim_resource").prefetch_related(
                Prefetch("members", User.objects.filter(
                    scim_resource__deleted_at__isnull=True)))
        # Accounts and groups the directory deleted are kept for the audit trail, unseen.
        return rows.exclude(scim_resource__deleted_at__isnull=False).order_by("pk")

    def _row(self, resource_type: ResourceType, resource_id: str | None, *,
             lock: bool = False):
        if not ((resource_id or "").isascii() and resource_id.isdigit()) or len(resource_id) > 18:
            raise NotFoundException(detail=f"No {resource_type.name} {resource_id!r}.")
        rows = self._rows(resource_type)
        if lock:
            rows = rows.select_for_update(of=("self",))
        row = rows.filter(pk=int(resource_id)).first()
        if row is None:
            raise NotFoundException(detail=f"No {resource_type.name} {resource_id!r}.")
        return row

    def _locked(self, resource_type: ResourceType, resource_id: str | None,
                expected_version: str | None) -> tuple[Any, Resource]:
        """The row under lock and its resource, if it still has the version the change was
        made against."""
        row = self._row(resource_type, resource_id, lock=True)
        current = self._resource(resource_type, row)
        if expected_version is not None and current.meta.version != expected_version:
            raise PreconditionFailedException(detail="The resource changed meanwhile.")
        return row, current

    # --- Rows to resources ----------------------------------------------------------------------

    def _resource(self, resource_type: ResourceType, row) -> Resource:
        kept = getattr(row, "scim_resource", None)
        if resource_type.name == "User":
            data, created = user_data(row, kept), row.date_joined
        else:
            data, created = group_data(row, kept), None
        model = self.provider.model_for(resource_type)
        with self.provider:
            resource = model.model_validate(data, scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        # The version is a digest of what is published, so a change made elsewhere (the
        # admin, a membership) changes it too, with no counter to keep in step.
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]
        resource.meta = Meta(
            resource_type=resource_type.name,
            created=kept.created_at if kept else created,
            last_modified=kept.modified_at if kept else created,
            version=f'W/"{digest}"')
        return resource


def user_data(user: User, kept: ScimResource | None) -> dict:
    data = dict(kept.attributes) if kept else {}
    data.setdefault("schemas", [CORE_USER])
    name = {key: value for key, value in {
        **data.get("name", {}), "givenName": user.first_name, "familyName": user.last_name,
    }.items() if value}
    data.update(
        id=str(user.pk), userName=user.username,
        active=user.is_active if "active" in data or kept is None else None,
        externalId=(kept.external_id if kept else "") or None, name=name or None,
        emails=published_emails(data.get("emails") or [], user.email) or None,
        groups=[{"value": str(group.pk), "display": group.display_name, "type": "direct",
                 "$ref": f"Groups/{group.pk}"} for group in user.directory_groups.all()] or None)
    return {key: value for key, value in data.items() if value is not None}


def group_data(group: DirectoryGroup, kept: ScimResource | None) -> dict:
    data = dict(kept.attributes) if kept else {}
    data.setdefault("schemas", [CORE_GROUP])
    displays = {member["value"]: member.get("display") for member in data.get("members", [])}
    data.update(
        id=str(group.pk), displayName=group.display_name,
        externalId=group.external_id or None,
        members=[{"value": str(user.pk), "display": displays.get(str(user.pk)) or user.username,
                  "type": "User", "$ref": f"Users/{user.pk}"}
                 for user in group.members.all()] or None)
    return {key: value for key, value in data.items() if value is not None}


def primary_index(emails: list[dict]) -> int | None:
    """Which of the emails is the account's own: the primary one, else the first."""
    if not emails:
        return None
    return next((index for index, email in enumerate(emails) if email.get("primary")), 0)


def published_emails(sent: list[dict], email: str) -> list[dict]:
    """The emails as the directory sent them, the account's own reading as it is now (an
    administrator may have changed it)."""
    emails = [dict(entry) for entry in sent]
    index = primary_index(emails)
    if index is None:
        return [{"value": email, "primary": True}] if email else []
    if email:
        emails[index]["value"] = email
    else:
        del emails[index]
    return emails


# --- Resources to fields -----------------------------------------------------------------------

def account_fields(resource: Resource) -> services.AccountFields:
    data = resource.model_dump(mode="json")
    attributes = {key: value for key, value in data.items() if key not in USER_COLUMNS}
    if "active" in attributes:
        # Kept only as the mark that it is set: its value is the account's own is_active.
        attributes["active"] = True
    name = dict(attributes.pop("name", {}))
    given, family = name.pop("givenName", ""), name.pop("familyName", "")
    if name:
        attributes["name"] = name
    emails = attributes.get("emails") or []
    index = primary_index(emails)
    return services.AccountFields(
        username=resource.user_name or "", first_name=given, last_name=family,
        email=emails[index].get("value", "") if index is not None else "",
        is_active=resource.active, external_id=resource.external_id or "",
        attributes=attributes)


def group_fields(resource: Resource) -> services.GroupFields:
    data = resource.model_dump(mode="json")
    members = resource.members or []
    if any(member.type and member.type != "User" for member in members):
        raise InvalidValueException(detail="Members are users: directory groups do not nest.")
    return services.GroupFields(
        display_name=resource.display_name or "", external_id=resource.external_id or "",
        member_ids=[member.value for member in members if member.value is not None],
        attributes={**{key: value for key, value in data.items() if key not in GROUP_COLUMNS},
                    "members": [{"value": member.value, "display": member.display}
                                for member in members if member.display]})
