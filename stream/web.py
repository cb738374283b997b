"""The browser page (aiohttp, in its own thread and event loop): the live picture as MJPEG, and α
sliders per site, presets, the LFO and the model switch over a WebSocket.

```
GET /                 the page (?view=picture: the picture alone, for an OBS Browser Source)
GET /stream.mjpg      the live picture, multipart JPEG; each viewer gets the newest frame when it is ready
GET /frame.jpg        one JPEG of the next frame
GET /ws               WebSocket: the server sends {"type": "state", ...} when it changes (at most 10 a
                      second); the page sends {"alpha": a, "site": NAME | "*" | null}, {"preset": n},
                      {"model": "next" | NAME} or {"lfo": true | false}
```

Bound to 127.0.0.1 unless told otherwise; a request from any address other than loopback (or
naming the server by anything but a loopback name) must carry the token (``?token=``, which the
page passes on to the picture and the WebSocket). A WebSocket whose Origin is another site is
refused, so a web page elsewhere cannot play α.
"""

import asyncio
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

import cv2
import numpy as np

from dynastream.nets.errors import short_repr
from dynastream.stream.inputs import EDITED, Inbox, Op, OpError, alpha_value, lfo_value, model_value, preset_value
from dynastream.stream.ring import Frame
from dynastream.stream.sinks import Sink, StageError

SOURCE = "web"
PAGE = Path(__file__).parent / "assets" / "live.html"
JPEG_QUALITY = 80
STATE_INTERVAL_S = 0.1
MJPEG_SEND_BUFFER = 64 * 1024   # bytes the kernel may hold for one viewer (a frame or a few)
_WANT_S = 2.0            # after a /frame.jpg request, keep encoding this long even with no viewer
_MAX_MESSAGE = 4096      # bytes in one WebSocket message from a page


def is_loopback(host: Optional[str]) -> bool:
    if host in ("localhost",):
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def client_op(text: str) -> Op:
    """The op for one message from the page; OpError if it is refused."""
    try:
        message = json.loads(text)
    except ValueError:
        raise OpError("not JSON") from None
    if not isinstance(message, dict):
        raise OpError(f"expected a JSON object, not {short_repr(message)}")
    keys = set(message)
    if keys == {"alpha"} or keys == {"alpha", "site"}:
        site = message.get("site", EDITED)
        if site is not EDITED and (not isinstance(site, str) or not site):
            raise OpError(f"site must be a site name, '*' or null, not {short_repr(site)}")
        return Op("alpha", alpha_value(message["alpha"]), site)
    if keys == {"preset"}:
        return Op("preset", preset_value(message["preset"]))
    if keys == {"model"}:
        return Op("model", model_value(message["model"]))
    if keys == {"lfo"}:
        return Op("lfo", lfo_value(message["lfo"]))
    raise OpError(f"unknown message {short_repr(message)}")


class WebSink(Sink):
    """Encodes the newest frame as JPEG (on its sink thread), only while someone watches."""

    name = "web"

    def __init__(self, server: "WebServer", size_wh: tuple[int, int]):
        self.server = server
        self._bgr = np.empty((size_wh[1], size_wh[0], 3), np.uint8)
        self._params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        self.encoded = 0       # frames encoded (only while someone watches)

    def write(self, frame: Frame) -> None:
        if not self.server.wanted():
            return
        cv2.cvtColor(frame.rgb_hwc_u8, cv2.COLOR_RGB2BGR, dst=self._bgr)
        ok, jpeg = cv2.imencode(".jpg", self._bgr, self._params)
        if ok:
            self.encoded += 1
            self.server.publish(jpeg.tobytes())

    def extra_stats(self) -> dict:
        return {"encoded": self.encoded, "sent": self.server.frames_sent}

    def describe(self) -> str:
        n = self.server.viewers
        return f"web ({n} viewer{'s' if n != 1 else ''})"


class WebServer:
    """The page's HTTP server on ``host:port`` (port 0: any free port)."""

    def __init__(self, host: str, port: int, inbox: Inbox, state: Callable[[], dict], token: Optional[str] = None):
        try:
            from aiohttp import web
        except ImportError:
            raise StageError("--web needs aiohttp: pip install 'dynastream[stage]'") from None

        self._web = web
        self.host, self.inbox, self.state = host, inbox, state
        self.token = token
        inbox.register(SOURCE)
        self.viewers = 0                 # MJPEG streams and WebSockets open now
        self.frames_sent = 0
        self._want_until = 0.0
        self._jpeg: Optional[bytes] = None
        self._seq = 0
        self._closing = False
        self._sockets: set = set()       # open WebSockets
        self._streams: set = set()       # transports of open MJPEG streams
        self._page = PAGE.read_bytes()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(port,), name="web", daemon=True)
        self.thread.start()
        self._ready.wait()
        if self._error is not None:
            self.thread.join()
            e = self._error
            reason = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
            raise StageError(f"--web: cannot listen on {host} port {port} ({reason})") from None

    @property
    def url(self) -> str:
        """The page's address, with the token where one is needed; for a server on every interface,
        by this machine's LAN address (what a phone on the same network types)."""
        host = _lan_address() if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # -- the sink thread's side ---------------------------------------------------------------

    def wanted(self) -> bool:
        return self.viewers > 0 or time.monotonic() < self._want_until

    def publish(self, jpeg: bytes) -> None:
        self._loop.call_soon_threadsafe(self._new_frame, jpeg)

    # -- the event loop's thread --------------------------------------------------------------

    def _run(self, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start(port))
        except BaseException as e:   # a port in use, an address this machine lacks
            self._error = e
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _start(self, port: int) -> None:
        web = self._web
        self._frame_event = asyncio.Event()
        @web.middleware
        async def guard(request, handler):
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=_MAX_MESSAGE)
        app.router.add_get("/", self._index)
        app.router.add_get("/stream.mjpg", self._mjpeg)
        app.router.add_get("/frame.jpg", self._frame)
        app.router.add_get("/ws", self._websocket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]
        self._broadcaster = asyncio.ensure_future(self._broadcast())

    def _new_frame(self, jpeg: bytes) -> None:
        self._jpeg = jpeg
        self._seq += 1
        event, self._frame_event = self._frame_event, asyncio.Event()
        event.set()

    async def _guard(self, request, handler):
        web = self._web
        # Without the token only loopback may ask, and only by a loopback name: a page elsewhere whose
        # name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name as Host.
        if not (is_loopback(request.remote) and is_loopback(urlsplit(f"//{request.host}").hostname)):
            given = request.query.get("token", "")
            if not self.token or not secrets.compare_digest(given.encode(), self.token.encode()):
                raise web.HTTPForbidden(text="dynastream: this page needs its token (?token=..., printed by "
                                             "dynastream live at start)\n")
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="dynastream: WebSocket from another site refused\n")
        return await handler(request)

    async def _index(self, request):
        return self._web.Response(body=self._page, content_type="text/html", charset="utf-8",
                                  headers={"Cache-Control": "no-store"})

    async def _frame(self, request):
        self._want_until = time.monotonic() + _WANT_S
        event = self._frame_event
        try:
            await asyncio.wait_for(event.wait(), _WANT_S)
        except asyncio.TimeoutError:
            if self._jpeg is None:
                raise self._web.HTTPServiceUnavailable(text="dynastream: no frame yet\n") from None
        return self._web.Response(body=self._jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _mjpeg(self, request):
        response = self._web.StreamResponse(headers={
            "Content-Type": "multipart/x-mixed-replace; boundary=frame", "Cache-Control": "no-store"})
        await response.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport is not None else None
        if sock is not None:   # a viewer that falls behind gets the newest frame, not seconds of queued ones
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MJPEG_SEND_BUFFER)
        self.viewers += 1
        self._streams.add(request.transport)
        sent = -1
        try:
            while not self._closing:
                event = self._frame_event
                if self._jpeg is not None and sent != self._seq:
                    sent, jpeg = self._seq, self._jpeg
                    await response.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                    self.frames_sent += 1
                else:
                    await event.wait()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.viewers -= 1
            self._streams.discard(request.transport)
        return response

    async def _websocket(self, request):
        web = self._web
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=_MAX_MESSAGE)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.viewers += 1
        try:
            await ws.send_str(self._state_text())
            async for message in ws:
                if message.type != web.WSMsgType.TEXT:
                    self.inbox.refuse(SOURCE, "not a text message")
                    continue
                try:
                    self.inbox.put(SOURCE, client_op(message.data))
                except OpError as e:
                    self.inbox.refuse(SOURCE, str(e))
                    await ws.send_str(json.dumps({"type": "refused", "reason": str(e)}))
        finally:
            self.viewers -= 1
            self._sockets.discard(ws)
        return ws

    def _state_text(self) -> str:
        return json.dumps({"type": "state", **self.state()})

    async def _broadcast(self) -> None:
        last = ""
        while not self._closing:
            await asyncio.sleep(STATE_INTERVAL_S)
            if not self._sockets:
                continue
            text = self._state_text()
            if text == last:
                continue
            last = text
            for ws in list(self._sockets):
                try:
                    await ws.send_str(text)
                except ConnectionError:
                    pass

    async def _shutdown(self) -> None:
        self._closing = True
        self._frame_event.set()
        self._broadcaster.cancel()
        for ws in list(self._sockets):
            await ws.close()
        for transport in list(self._streams):
            if transport is not None:
                transport.abort()   # a stalled viewer's write would otherwise hold the shutdown
        await self._runner.cleanup()

    def close(self) -> None:
        if not self.thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        except (TimeoutError, ConnectionError):   # a client that will not go: the loop stops regardless
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self.thread.join(timeout=5)


def _lan_address() -> str:
    """The address of the interface that leads off this machine (no packet is sent), else 127.0.0.1."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.254.254.254", 1))
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def new_token() -> str:
    return secrets.token_urlsafe(16)
