"""REST endpoints for a tenant admin to register EMR adapters as integration principals."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from relay.auth.integrations import Integration
from relay.auth.principal import Role
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import RequestBody, ResponseBody
from relay.runtime_key import RUNTIME

routes = RouteTable("integrations")
ADMIN = frozenset({Role.ADMIN})


class NewIntegration(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    public_key_pem: str = Field(min_length=1, max_length=16384)


class IntegrationView(ResponseBody):
    id: str = Field(description="The client id: iss and sub of the integration's client assertions")
    name: str
    disabled: bool
    created_at: datetime
    token_url: str = Field(description="The aud of client assertions, and where to POST them")

    @classmethod
    def of(cls, integration: Integration, token_url: str) -> IntegrationView:
        return cls(id=integration.id, name=integration.name, disabled=integration.disabled,
                   created_at=integration.created_at, token_url=token_url)


class IntegrationList(ResponseBody):
    integrations: list[IntegrationView]


class IntegrationChanges(RequestBody):
    disabled: bool


@routes.post("/api/v1/integrations", summary="Register an integration principal by its public key", roles=ADMIN,
             body=NewIntegration, response=IntegrationView, status=201)
async def create_integration(call: Call[NewIntegration]) -> IntegrationView:
    service = call.request.app[RUNTIME].integrations
    integration = await service.create(call.caller.tenant_id, name=call.body.name,
                                       public_key_pem=call.body.public_key_pem, actor=call.caller.actor)
    return IntegrationView.of(integration, service.token_url)


@routes.get("/api/v1/integrations", summary="List the tenant's integration principals", roles=ADMIN,
            response=IntegrationList)
async def list_integrations(call: Call) -> IntegrationList:
    service = call.request.app[RUNTIME].integrations
    return IntegrationList(integrations=[IntegrationView.of(i, service.token_url)
                                         for i in await service.list(call.caller.tenant_id)])


@routes.patch("/api/v1/integrations/{integration_id}", summary="Disable or re-enable an integration principal",
              roles=ADMIN, body=IntegrationChanges, status=204)
async def update_integration(call: Call[IntegrationChanges]) -> None:
    await call.request.app[RUNTIME].integrations.set_disabled(
        call.caller.tenant_id, call.param("integration_id"), call.body.disabled, actor=call.caller.actor
    )
