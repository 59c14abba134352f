"""Errors a client can cause with pools and consults (codes: docs/messaging.md)."""

from __future__ import annotations

from relay.errors import Conflict, Forbidden, InvalidRequest, NotFound


class PoolNotFound(NotFound):
    code = "pool_not_found"


class PoolNameTaken(Conflict):
    code = "pool_name_taken"


class DuplicateMembers(InvalidRequest):
    code = "duplicate_members"


class PoolEmpty(InvalidRequest):
    """The pool has nobody but the requester who could take the consult."""

    code = "pool_empty"


class InvalidConsultTarget(InvalidRequest):
    code = "invalid_consult_target"


class ConsultNotFound(NotFound):
    code = "consult_not_found"


class NotConsultMember(Forbidden):
    """The caller neither requested the consult nor was asked to take it."""

    code = "not_consult_member"


class ConsultForbidden(Forbidden):
    """The caller is part of the consult, but this step belongs to someone else."""

    code = "consult_forbidden"


class ConsultTaken(Conflict):
    code = "consult_taken"


class ConsultNotAccepted(Conflict):
    code = "consult_not_accepted"
