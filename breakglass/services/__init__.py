"""Every change to grants and requests, one public function per change (STYLE.md):

- `grants`: each transition of a grant (activate, extend, expire, revoke, abort, deny, lapse,
  revoke all) and the one follow-up every transition emits, which alerts and connectors
  hang on.
- `break_glass`: opening or extending access at once, on top of `grants`.
- `requests`: access and extension requests (approve, deny, withdraw, lapse), on top of
  `grants`.
- `applications`: API applications, their tokens and the activity they report.
- `groups`: who may break glass in a group.

Views, the admin, the API, tasks and commands call these; lower layers never import them."""
