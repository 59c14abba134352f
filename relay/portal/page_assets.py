"""Which files of clients/web the relay serves for the patient portal page: an allow-list of
the portal's and the envelope's modules and the vendored files they import, nothing else
(no directory listing, no path outside the web root)."""

from __future__ import annotations

import re
from pathlib import Path

from relay.errors import NotFound, Unavailable

PAGE = "src/portal/portal.html"
ALLOWED = re.compile(
    r"src/portal/[a-z0-9-]+\.(?:js|css)"
    r"|src/envelope/[a-z0-9-]+\.js"
    r"|vendor/@hpke/(?:core|common)/esm/(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.js"
    r"|vendor/tus-js-client/tus\.js"
)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


class PortalAssets:
    """The portal page's files under ``root`` (clients/web)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def page(self) -> Path:
        """portal.html, or Unavailable when the web root does not hold it."""
        path = self.root / PAGE
        if not path.is_file():
            raise Unavailable("the portal page is not installed on this relay", code="portal_page_unavailable")
        return path

    def asset(self, relative: str) -> Path:
        """An allow-listed file by its path under the web root, or NotFound."""
        if not ALLOWED.fullmatch(relative) or ".." in relative.split("/"):
            raise NotFound("no such file", code="asset_not_found")
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise NotFound("no such file", code="asset_not_found")
        return path


def content_type(path: Path) -> str:
    return CONTENT_TYPES[path.suffix]
