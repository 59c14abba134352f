"""The portal's errors, each with its HTTP status and the code docs/portal.md names."""

from __future__ import annotations

from relay.errors import ApiError, Conflict, Forbidden, InvalidRequest, Locked, NotFound


class InvitationNotFound(NotFound):
    """An unknown invitation id or a wrong secret: one answer for both."""

    code = "invitation_not_found"

    def __init__(self) -> None:
        super().__init__("no such invitation, or the link is not complete")


class InvitationEnded(ApiError):
    """410 with ``invitation_expired``, ``invitation_used_up`` or ``invitation_revoked``."""

    status = 410

    def __init__(self, status: str) -> None:
        messages = {"expired": "this invitation has expired", "used_up": "this invitation has been used",
                    "revoked": "this invitation was withdrawn"}
        super().__init__(messages[status] + "; ask the care team for a new one", code=f"invitation_{status}")


class InvitationLocked(Locked):
    code = "invitation_locked"

    def __init__(self) -> None:
        super().__init__("too many wrong answers; this invitation is locked and the care team was told")


class VerificationFailed(InvalidRequest):
    code = "verification_failed"

    def __init__(self, attempts_left: int) -> None:
        super().__init__("that answer is not right", details={"attempts_left": attempts_left})


class NotVerified(Forbidden):
    code = "not_verified"

    def __init__(self) -> None:
        super().__init__("confirm who you are first")


class UploadLimitReached(Conflict):
    code = "upload_limit_reached"

    def __init__(self, max_uploads: int) -> None:
        super().__init__("this invitation allows no more uploads", details={"max": max_uploads})


class DeliveryUnavailable(ApiError):
    """The channel is not configured (SMS without Twilio settings) or its server refused."""

    status, code = 503, "delivery_unavailable"
