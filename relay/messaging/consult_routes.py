"""REST endpoints for specialty pools, consults and the tenant's escalation time (docs/messaging.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from relay.auth.principal import Role
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import RequestBody, ResponseBody
from relay.messaging.consults import Consult, ConsultState
from relay.messaging.conversation_routes import MAX_LIFESPAN, MIN_LIFESPAN
from relay.messaging.escalation import MAX_ESCALATION, MIN_ESCALATION
from relay.messaging.pools import MAX_POOL_MEMBERS, Pool
from relay.runtime_key import RUNTIME

routes = RouteTable("consults")

ADMINS = frozenset({Role.ADMIN})
CLINICIANS = frozenset({Role.CLINICIAN})
CONSULT_PATH = "/api/v1/consults/{consult_id}"
ID_PATTERN = r"^[0-9a-f]{32}$"


class NewPool(RequestBody):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$",
                      description='What the pool covers, e.g. "dermatology on call" (unique in the tenant; no PHI)')
    member_user_ids: list[str] = Field(min_length=1, max_length=MAX_POOL_MEMBERS,
                                       description="Clinicians in on-call order: the first is offered new consults")


class PoolMembers(RequestBody):
    member_user_ids: list[str] = Field(min_length=1, max_length=MAX_POOL_MEMBERS,
                                       description="The new on-call order")


class PoolView(ResponseBody):
    id: str
    name: str
    created_at: datetime
    member_user_ids: list[str] = Field(description="In on-call order")

    @classmethod
    def of(cls, pool: Pool) -> PoolView:
        return cls(id=pool.id, name=pool.name, created_at=pool.created_at, member_user_ids=list(pool.member_ids))


class PoolList(ResponseBody):
    pools: list[PoolView]


class NewConsult(RequestBody):
    colleague_user_id: str | None = Field(None, pattern=ID_PATTERN, description="Ask this colleague, or")
    pool_id: str | None = Field(None, pattern=ID_PATTERN, description="ask this pool (exactly one of the two)")
    lifespan_seconds: int | None = Field(None, ge=MIN_LIFESPAN, le=MAX_LIFESPAN,
                                         description="How long the consult conversation's messages live")

    @model_validator(mode="after")
    def one_target(self) -> NewConsult:
        if (self.colleague_user_id is None) == (self.pool_id is None):
            raise ValueError("name exactly one of colleague_user_id and pool_id")
        return self


class ConsultView(ResponseBody):
    id: str
    conversation_id: str
    state: ConsultState
    requester_id: str
    colleague_id: str | None
    pool_id: str | None
    offered_to: str | None = Field(description="Whose turn it is to take the consult")
    accepted_by: str | None
    escalation_level: int = Field(description="How many times it was offered to the pool's next member")
    escalate_at: datetime | None = Field(description="When an open pool consult is offered to the next member")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, consult: Consult) -> ConsultView:
        return cls(
            id=consult.id, conversation_id=consult.conversation_id, state=consult.state,
            requester_id=consult.requester_id, colleague_id=consult.colleague_id, pool_id=consult.pool_id,
            offered_to=consult.offered_to, accepted_by=consult.accepted_by,
            escalation_level=consult.escalation_level, escalate_at=consult.escalate_at,
            created_at=consult.created_at, updated_at=consult.updated_at,
        )


class ConsultList(ResponseBody):
    consults: list[ConsultView]


class EscalationView(ResponseBody):
    seconds: int | None = Field(description="The tenant's own escalation time; null when it uses the server's default.")
    effective_seconds: int


class EscalationChange(RequestBody):
    seconds: int | None = Field(ge=MIN_ESCALATION, le=MAX_ESCALATION,
                                description="Seconds an open pool consult waits before it is offered to the next "
                                "member; null returns to the server's default.")


@routes.post("/api/v1/pools", summary="Create a specialty pool", roles=ADMINS, body=NewPool, response=PoolView,
             status=201)
async def create_pool(call: Call[NewPool]) -> PoolView:
    pool = await call.request.app[RUNTIME].messaging.pools.create(call.caller, call.body.name,
                                                                   call.body.member_user_ids)
    return PoolView.of(pool)


@routes.get("/api/v1/pools", summary="The tenant's specialty pools", roles=CLINICIANS | ADMINS, response=PoolList)
async def list_pools(call: Call) -> PoolList:
    found = await call.request.app[RUNTIME].messaging.pools.list_for(call.caller)
    return PoolList(pools=[PoolView.of(pool) for pool in found])


@routes.put("/api/v1/pools/{pool_id}/members", summary="Replace a pool's on-call order", roles=ADMINS,
            body=PoolMembers, response=PoolView)
async def set_pool_members(call: Call[PoolMembers]) -> PoolView:
    pool = await call.request.app[RUNTIME].messaging.pools.set_members(call.caller, call.param("pool_id"),
                                                                        call.body.member_user_ids)
    return PoolView.of(pool)


@routes.post("/api/v1/consults", summary="Ask a colleague or a pool for a second opinion", roles=CLINICIANS,
             body=NewConsult, response=ConsultView, status=201)
async def create_consult(call: Call[NewConsult]) -> ConsultView:
    body = call.body
    consult = await call.request.app[RUNTIME].messaging.consults.create(
        call.caller, colleague_user_id=body.colleague_user_id, pool_id=body.pool_id,
        lifespan_seconds=body.lifespan_seconds,
    )
    return ConsultView.of(consult)


@routes.get("/api/v1/consults", summary="Consults the caller requested, was asked or may accept", roles=CLINICIANS,
            response=ConsultList)
async def list_consults(call: Call) -> ConsultList:
    found = await call.request.app[RUNTIME].messaging.consults.list_for(call.caller)
    return ConsultList(consults=[ConsultView.of(consult) for consult in found])


@routes.get(CONSULT_PATH, summary="A consult's state", roles=CLINICIANS, response=ConsultView)
async def get_consult(call: Call) -> ConsultView:
    return ConsultView.of(await call.request.app[RUNTIME].messaging.consults.get(call.caller, call.param("consult_id")))


@routes.post(CONSULT_PATH + "/accept", summary="Take an open consult (409 consult_taken if someone was faster)",
             roles=CLINICIANS, response=ConsultView)
async def accept_consult(call: Call) -> ConsultView:
    consults = call.request.app[RUNTIME].messaging.consults
    return ConsultView.of(await consults.accept(call.caller, call.param("consult_id")))


@routes.post(CONSULT_PATH + "/resolve", summary="Close an accepted consult (requester or accepter)", roles=CLINICIANS,
             response=ConsultView)
async def resolve_consult(call: Call) -> ConsultView:
    consults = call.request.app[RUNTIME].messaging.consults
    return ConsultView.of(await consults.resolve(call.caller, call.param("consult_id")))


@routes.post(CONSULT_PATH + "/cancel", summary="Withdraw an open or accepted consult (requester)", roles=CLINICIANS,
             response=ConsultView)
async def cancel_consult(call: Call) -> ConsultView:
    consults = call.request.app[RUNTIME].messaging.consults
    return ConsultView.of(await consults.cancel(call.caller, call.param("consult_id")))


@routes.get("/api/v1/tenant/consult-escalation", summary="The tenant's consult escalation time", roles=ADMINS,
            response=EscalationView)
async def consult_escalation(call: Call) -> EscalationView:
    escalation = call.request.app[RUNTIME].messaging.consults.escalation
    seconds = await escalation.tenant_seconds(call.caller.tenant_id)
    return EscalationView(seconds=seconds, effective_seconds=escalation.default_seconds if seconds is None else seconds)


@routes.put("/api/v1/tenant/consult-escalation", summary="Set the tenant's consult escalation time (consults "
            "escalated afterwards)", roles=ADMINS, body=EscalationChange, response=EscalationView)
async def set_consult_escalation(call: Call[EscalationChange]) -> EscalationView:
    escalation = call.request.app[RUNTIME].messaging.consults.escalation
    await escalation.set(call.caller, call.body.seconds)
    seconds = call.body.seconds
    return EscalationView(seconds=seconds, effective_seconds=escalation.default_seconds if seconds is None else seconds)
