"""A real headless Chromium (Debian's `chromium` package) driven over the DevTools protocol, for
tests of the live web page: evaluate JavaScript in the page, take screenshots."""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pytest

CHROMIUM_NAMES = ("chromium", "chromium-headless-shell", "chromium-browser")


def chromium_path() -> Optional[str]:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def need_chromium() -> str:
    """The browser, or a skip (a failure under .ci/run, which installs it)."""
    path = chromium_path()
    if path is None:
        if os.environ.get("DYNASTREAM_REQUIRE_CHROMIUM") == "1":
            pytest.fail("DYNASTREAM_REQUIRE_CHROMIUM=1 but no chromium: apt-get install chromium")
        pytest.skip("no chromium (apt-get install chromium)")
    return path


class Chromium:
    def __init__(self, url: str, profile: Path, size_wh: tuple[int, int] = (900, 1000)):
        self.proc = subprocess.Popen(
            [need_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={size_wh[0]},{size_wh[1]}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        found = threading.Event()
        self._port = 0

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                if "DevTools listening on ws://" in line and not found.is_set():
                    self._port = int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(60):
            self.close()
            raise RuntimeError("chromium did not start: " + "".join(self.log[-20:]))
        self._loop = asyncio.new_event_loop()
        self._ws = self._session = None
        self._id = 0
        self._run(self._connect(url))

    def _run(self, coro, timeout: float = 30.0):
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def _connect(self, url: str) -> None:
        import aiohttp

        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    async def _call(self, method: str, **params) -> dict:
        self._id += 1
        await self._ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            message = json.loads((await self._ws.receive()).data)
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self._run(self._call("Runtime.evaluate", expression=expression, returnByValue=True,
                                      awaitPromise=True))
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        """Poll until the expression is truthy (an exception counts as not yet: the page may still
        be loading); its value."""
        deadline = time.monotonic() + timeout
        error = None
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError as e:
                value, error = None, e
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression} (last error: {error})")
            time.sleep(0.1)

    def screenshot(self) -> np.ndarray:
        """The page as RGB pixels."""
        png = base64.b64decode(self._run(self._call("Page.captureScreenshot", format="png"))["data"])
        bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        try:
            if self._ws is not None:
                self._run(self._ws.close(), 5)
            if self._session is not None:
                self._run(self._session.close(), 5)
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_loop"):
            self._loop.close()

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
