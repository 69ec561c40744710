"""Outbound HTTP through the host, under the policy's URL rules and the SSRF guard.
Redirects come back to the runbook; the host never follows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from . import _host


#: The methods the host sends.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class Request:
    """One request."""

    #: ``GET``, ``HEAD``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Optional[bytes] = None

    def __post_init__(self) -> None:
        # Checked here, so a typo fails the unit test, not only the built component.
        if self.method.upper() not in METHODS:
            raise ValueError(f"HTTP method {self.method!r} is not one of: {', '.join(METHODS)}")


@dataclass
class Response:
    """What the server answered."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300

    def header(self, name: str) -> Optional[str]:
        """The first header called ``name`` (any case)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def text(self) -> str:
        """The body as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


def send(request: Request) -> Response:
    """Sends ``request``."""
    return _host.current().http(request)


def get(url: str, headers: Optional[list[tuple[str, str]]] = None) -> Response:
    """``GET url``."""
    return send(Request("GET", url, list(headers or [])))
