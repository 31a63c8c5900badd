"""The systems a connector reaches, one module per kind, each with one `Target` class
(base.py): `grant(login)`, `revoke(login)`, `members()` and `check()`. They are thin adapters:
what to ask of them, when, and what their answers mean is breakglass/services/connectors.py."""

from django.utils.module_loading import import_string

from breakglass.connectors.base import Target
from breakglass.models import Connector

# Imported when first used: a server that has no LDAP connector never loads ldap3.
TARGET_CLASSES = {
    Connector.Kind.POSTGRES_ROLE: "breakglass.connectors.postgres_role.PostgresRoleTarget",
    Connector.Kind.MARIADB_ROLE: "breakglass.connectors.mariadb_role.MariaDBRoleTarget",
    Connector.Kind.LDAP_GROUP: "breakglass.connectors.ldap_group.LdapGroupTarget",
    Connector.Kind.DJANGO_GROUP: "breakglass.connectors.django_group.DjangoGroupTarget",
    Connector.Kind.WEBHOOK: "breakglass.connectors.webhook.WebhookTarget",
}


def target_class(kind: str) -> type[Target]:
    return import_string(TARGET_CLASSES[kind])


def target_for(connector: Connector) -> Target:
    return target_class(connector.kind)(connector)
