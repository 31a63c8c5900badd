from breakglass.models import Group


def nest_under(bottom: Group, depth: int) -> Group:
    """Build `depth` groups above `bottom`, each containing the one below; return the top."""
    top = bottom
    for level in range(depth):
        parent = Group.objects.create(name=f"Level {level}", slug=f"level-{level}")
        parent.contains.add(top)
        top = parent
    return top


def open_incident(external_id: str = "INC-1", severity: str = "sev2", *, groups=(),
                  policies=(), title: str = ""):
    """An open incident, as a paging system would report it, linked to `groups` (slugs)."""
    from risk.incidents import upsert_incident

    return upsert_incident(external_id=external_id, title=title or f"Incident {external_id}",
                           severity=severity, groups=list(groups) or None,
                           policies=list(policies) or None, actor=None).incident
