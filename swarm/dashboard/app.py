"""The Starlette app: the page and its assets, the live stream, the writes, /metrics.

Routes
  GET  /, /swarm/{id}                 the page (one HTML file; app.js draws list or swarm)
  GET  /static/...                    its script and style, shipped in the package
  GET  /api/swarms                    the swarm list (JSON)
  GET  /api/swarms/{id}               one tick (JSON)
  GET  /api/swarms/{id}/stream        ticks as Server-Sent Events, about one a second
  POST /api/swarms/{id}/{action}      pause | resume | boost | inject | cancel (token)
  GET  /metrics                       Prometheus text format

The page builds its DOM with textContent and SVG attributes only, and every response carries
a Content-Security-Policy that allows no inline script or style and no other origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm.board import Board
from swarm.dashboard import control, view
from swarm.dashboard.control import Access, Refused
from swarm.dashboard.feed import Hub
from swarm.dashboard.prometheus import HubCollector, SwarmCollector

STATIC = Path(__file__).parent / "static"
MAX_FEEDS = 64  # swarms read at once; each costs one frame of reads a second

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Settings:
    access: Access
    period_s: float = 1.0
    rows: int = view.TREE_ROWS
    check_host: bool = False  # bound to loopback: refuse other Host names (DNS rebinding)


class Guard:
    """Security headers on every response; on loopback, only loopback Host names."""

    def __init__(self, app: ASGIApp, check_host: bool) -> None:
        self.app = app
        self.check_host = check_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.check_host:
            headers = dict(scope["headers"])
            host = control.host_of(headers.get(b"host", b"").decode("latin-1"))
            if host not in LOOPBACK_HOSTS:
                response = JSONResponse({"error": "unexpected Host header"}, status_code=421)
                await self._secured(response)(scope, receive, send)
                return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_secured)

    @staticmethod
    def _secured(response: Response) -> Response:
        for name, value in SECURITY_HEADERS:
            response.headers[name.decode()] = value.decode()
        return response


def _denied(write: bool = False) -> JSONResponse:
    why = "a write needs the token" if write else "reading needs the token on this address"
    return JSONResponse(
        {"error": f"{why} (Authorization: Bearer <token>)"},
        status_code=401,
        headers={"www-authenticate": "Bearer"},
    )


def create_app(
    client: Any,
    settings: Settings,
    *,
    exec_depth: Callable[[], dict[str, int]] | None = None,
) -> Starlette:
    """The dashboard on a decoded-responses Redis client."""
    access = settings.access

    def make_read(swarm_id: str) -> Callable[[], bytes]:
        reader = view.Reader(client, swarm_id, rows=settings.rows)
        return lambda: view.read_encoded(reader)

    hub = Hub(make_read, settings.period_s)
    registry = CollectorRegistry()
    registry.register(SwarmCollector(client, exec_depth=exec_depth))
    registry.register(HubCollector(hub))

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def swarms(request: Request) -> Response:
        if not access.may_read(request.headers):
            return _denied()
        rows = await asyncio.to_thread(view.swarm_list, client)
        return JSONResponse({"swarms": rows, "open_reads": access.open_reads})

    async def known(request: Request) -> str | Response:
        """The swarm id of the path, or the response that refuses it."""
        sid = str(request.path_params["sid"])
        if not view.valid_swarm_id(sid):
            return JSONResponse({"error": "not a swarm id"}, status_code=400)
        if not await asyncio.to_thread(view.exists, client, sid):
            return JSONResponse({"error": f"no swarm {sid!r} on this Redis"}, status_code=404)
        return sid

    async def one(request: Request) -> Response:
        if not access.may_read(request.headers):
            return _denied()
        sid = await known(request)
        if isinstance(sid, Response):
            return sid
        feed = hub.feeds.get(sid)
        if feed is not None and feed.latest:  # pages watch it: their last tick is fresh
            return Response(feed.latest, media_type="application/json")
        reader = view.Reader(client, sid, rows=settings.rows)
        body = await asyncio.to_thread(view.read_encoded, reader)
        return Response(body, media_type="application/json")

    async def stream(request: Request) -> Response:
        if not access.may_read(request.headers):
            return _denied()
        sid = await known(request)
        if isinstance(sid, Response):
            return sid
        if sid not in hub.feeds and len(hub.feeds) >= MAX_FEEDS:
            return JSONResponse({"error": "too many swarms watched at once"}, status_code=503)

        async def ticks() -> AsyncIterator[bytes]:
            async with hub.watch(sid) as feed:
                seen = 0
                while True:
                    seen, data = await feed.next(seen)
                    yield b"event: tick\ndata: " + data + b"\n\n"

        return StreamingResponse(
            ticks(),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def write(request: Request) -> Response:
        if not access.may_write(request.headers):
            return _denied(write=True)
        action = str(request.path_params["action"])
        if action not in control.ACTIONS:
            return JSONResponse({"error": f"no action {action!r}"}, status_code=404)
        sid = await known(request)
        if isinstance(sid, Response):
            return sid
        try:
            body = control.parse_body(await _body(request))
            board = Board(client, sid)
            message = await asyncio.to_thread(control.act, board, action, body)
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({"ok": True, "message": message})

    async def metrics(request: Request) -> Response:
        if not access.may_read(request.headers):
            return _denied()
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/", page),
        Route("/swarm/{sid}", page),
        Route("/api/swarms", swarms),
        Route("/api/swarms/{sid}", one),
        Route("/api/swarms/{sid}/stream", stream),
        Route("/api/swarms/{sid}/{action}", write, methods=["POST"]),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.hub = hub
    app.add_middleware(Guard, check_host=settings.check_host)
    return app


async def _body(request: Request) -> bytes:
    """The request body, refusing (not buffering) anything over the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > control.BODY_MAX:
        raise Refused(f"request body over {control.BODY_MAX} bytes", 413)
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > control.BODY_MAX:
            raise Refused(f"request body over {control.BODY_MAX} bytes", 413)
    return bytes(chunks)
