"""The patient portal page and its static modules (clients/web/src/portal, docs/portal.md,
"The page"). The page itself looks nothing up: it reads the link's fragment and calls the
portal API. Every answer carries the relay's security headers and ``Cache-Control: no-store``."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from relay.errors import NotFound
from relay.http.endpoint import Call, RouteTable
from relay.portal.page_assets import PortalAssets, content_type
from relay.runtime_key import RUNTIME

routes = RouteTable("portal page")
MAX_ID = 64


def _assets(call: Call) -> PortalAssets:
    return PortalAssets(call.request.app[RUNTIME].settings.effective_web_root)


def _file(path: Path) -> web.FileResponse:
    return web.FileResponse(path, headers={"Content-Type": content_type(path)})


@routes.get("/p/{invitation_id:[A-Za-z0-9_-]+}", summary="The patient portal page of an invitation link",
            roles=None, produces="text/html")
async def portal_page(call: Call) -> web.FileResponse:
    if len(call.param("invitation_id")) > MAX_ID:
        raise NotFound("no such page", code="not_found")
    return _file(_assets(call).page())


@routes.get("/portal/assets/{path:[A-Za-z0-9_@./-]+}", summary="A module or style sheet of the portal page",
            roles=None, produces="text/javascript")
async def portal_asset(call: Call) -> web.FileResponse:
    return _file(_assets(call).asset(call.param("path")))
