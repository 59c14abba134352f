from relay.auth.principal import Role
from tests.support.harness import Relay


async def test_admin_logs_in_and_sees_themself(relay: Relay) -> None:
    admin = await relay.account("alice", Role.ADMIN)
    response = await relay.call("GET", "/api/v1/me", token=admin.token)
    assert response.status == 200
    me = await response.json()
    assert me["username"] == "alice" and me["role"] == "admin"
