from breakglass.models import Group


def nest_under(bottom: Group, depth: int) -> Group:
    """Build `depth` groups above `bottom`, each containing the one below; return the top."""
    top = bottom
    for level in range(depth):
        parent = Group.objects.create(name=f"Level {level}", slug=f"level-{level}")
        parent.contains.add(top)
        top = parent
    return top
