"""What the grant and request services refuse with; `status` is the HTTP answer each maps to."""


class GrantError(Exception):
    """A transition that is not allowed now (409)."""

    status = 409


class TransitionRefused(GrantError):
    """The grant's status does not allow this transition (Grant.TRANSITIONS)."""


class BreakGlassRefused(GrantError):
    status = 403


class StepUpRequired(BreakGlassRefused):
    """The rule cell wants a one-time code verified in the last 5 minutes."""


class RequestRefused(GrantError):
    """The actor may not make this change to a request (403)."""

    status = 403


class NotAllowed(GrantError):
    """The actor has no right to make this change (403)."""

    status = 403


class InvalidInput(GrantError):
    status = 400

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
