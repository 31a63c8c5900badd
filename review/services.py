"""Reviews of break-glass uses (SPEC §2.8): opened with each use (in its transaction), closed
by a security reviewer who did not make the use, escalated to every reviewer after 72 hours.
A group or policy may require the previous use to be reviewed before the next one."""

from datetime import timedelta

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from audit.alerts import alert
from audit.catalogue import ActorType, EventKind, Outcome
from audit.db import fast_insert
from audit.models import AuditEvent
from audit.services import record
from recovery.models import Confirmation
from review.models import Review

ESCALATE_AFTER = timedelta(hours=72)
MAX_NOTES = 10_000


class ReviewError(Exception):
    status = 409


class ReviewRefused(ReviewError):
    status = 403


class InvalidReview(ReviewError):
    status = 400

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


# Opening: one per use, in the use's own transaction.

def review_of_grant(grant, *, path: str, flags: list[str]) -> Review:
    """The review a break-glass grant opens, not yet written (the hot path writes it in the
    same statement as another row where the database allows)."""
    # grant_id, not grant: the grant must not cache a review that may be written later.
    return Review(path=path, grant_id=grant.pk, group_id=grant.group_id, subject_id=grant.user_id,
                  subject_label=grant.user.get_username(), is_drill=grant.is_drill,
                  flags=flags, opened_at=grant.activated_at or timezone.now())


def open_for_grant(grant, *, path: str, flags: list[str]) -> Review:
    review = review_of_grant(grant, path=path, flags=flags)
    fast_insert(review)
    return review


def open_for_attempt(attempt) -> Review:
    return Review.objects.create(
        path=Review.Path.QUORUM, attempt=attempt, policy_id=attempt.policy_id,
        subject_id=attempt.initiator_id, subject_label=attempt.initiator.get_username(),
        is_drill=attempt.is_drill, opened_at=attempt.broken_at or timezone.now())


def open_for_emergency_session(session) -> Review:
    return Review.objects.create(
        path=Review.Path.BACKUP, emergency_session=session, website_id=session.website_id,
        subject_label=f"owner of {session.website}", opened_at=session.started_at,
        is_drill=session.is_drill)


def blocking_review(*, group=None, policy=None) -> Review | None:
    """The oldest open review of a previous use, where the group or policy requires it closed
    before the next use."""
    if group is not None:
        return Review.objects.filter(group=group, outcome="").order_by("opened_at").first()
    return Review.objects.filter(policy=policy, outcome="").order_by("opened_at").first()


def blocking_message(review: Review) -> str:
    return (f"Review #{review.pk} of the previous use ({review.subject_label}, "
            f"{review.opened_at:%Y-%m-%d %H:%M} UTC) is still open: a security reviewer must "
            "close it before the next break glass here.")


# Closing.

def may_review(user) -> bool:
    return user.is_active and (user.is_superuser or user.is_security_reviewer)


def part_in_use(review: Review, user: User) -> str:
    """Why `user` took part in the reviewed use, or "": whoever made it, and for a quorum
    whoever confirmed the attempt or viewed its credentials. None of them judges it."""
    if review.subject_id is not None and review.subject_id == user.pk:
        return "You made this use: another security reviewer reviews it."
    if review.attempt_id is None:
        return ""
    if Confirmation.objects.filter(attempt_id=review.attempt_id, user=user).exists():
        return ("You took part in this use (you confirmed the attempt): another security "
                "reviewer reviews it.")
    viewed = AuditEvent.objects.filter(
        kind=EventKind.CREDENTIALS_VIEWED, target_type="recovery.recoveryattempt",
        target_id=str(review.attempt_id), actor_type=ActorType.USER, actor_id=str(user.pk))
    if viewed.exists():
        return ("You took part in this use (you viewed its credentials): another security "
                "reviewer reviews it.")
    return ""


def close_review(review: Review, *, actor: User, outcome: str, notes: str = "",
                 postmortem_url: str = "", request: HttpRequest | None = None) -> Review:
    """Record the outcome once. Reviewers never judge a use they took part in (part_in_use); a
    closed review keeps its first outcome. Refusals that are security events are audited."""
    notes = (notes or "").strip()
    postmortem_url = (postmortem_url or "").strip()
    if not may_review(actor):
        raise ReviewRefused("Only security reviewers record review outcomes.")
    if outcome not in Review.Outcome.values:
        raise InvalidReview("outcome", "Choose justified, not justified or drill.")
    if len(notes) > MAX_NOTES:
        raise InvalidReview("notes", f"Keep the notes under {MAX_NOTES} characters.")
    if postmortem_url and (len(postmortem_url) > 500 or not postmortem_url.lower().startswith(
            ("https://", "http://"))):
        raise InvalidReview("postmortem_url", "The post-mortem link must start with https://.")
    refusal = None
    with transaction.atomic():
        review = Review.objects.select_for_update().get(pk=review.pk)
        part = part_in_use(review, actor)
        if part:
            refusal = ReviewRefused(part)
        elif not review.is_open:
            refusal = ReviewError(f"This review is closed ({review.get_outcome_display()}, by "
                                  f"{review.reviewed_by}); its outcome stands.")
        elif (outcome == Review.Outcome.DRILL) != review.is_drill:
            raise InvalidReview("outcome", "Drill is the outcome of drills, and only of drills.")
        if refusal is None:
            review.outcome, review.notes, review.postmortem_url = outcome, notes, postmortem_url
            review.reviewed_by, review.reviewed_at = actor, timezone.now()
            review.save(update_fields=["outcome", "notes", "postmortem_url", "reviewed_by",
                                       "reviewed_at"])
            record(EventKind.REVIEW_CLOSED, actor=actor, target=review, reason=notes[:2000],
                   request=request, data={"outcome": outcome, "path": review.path,
                                          "postmortem_url": postmortem_url,
                                          "drill": review.is_drill})
            return review
    with transaction.atomic():
        record(EventKind.REVIEW_REFUSED, actor=actor, target=review, request=request,
               outcome=Outcome.DENIED, reason=str(refusal), data={"outcome": outcome})
    raise refusal


def escalate_overdue(now=None) -> int:
    """Every open review past 72 hours alerts all reviewers, once (the hourly task)."""
    now = now or timezone.now()
    escalated = 0
    due = Review.objects.filter(outcome="", escalated_at__isnull=True,
                                opened_at__lte=now - ESCALATE_AFTER)
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            review = Review.objects.select_for_update().get(pk=pk)
            if not review.is_open or review.escalated_at:
                continue
            review.escalated_at = now
            review.save(update_fields=["escalated_at"])
            event = record(EventKind.REVIEW_ESCALATED, actor=None, target=review,
                           data={"opened_at": review.opened_at.isoformat(),
                                 "path": review.path, "subject": review.subject_label})
            alert(event, users=User.objects.security_reviewers(), channels=["email", "sms"],
                  template="event")
            escalated += 1
    return escalated
