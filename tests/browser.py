"""A headless Chromium driven through the DevTools protocol, for tests of HTML pages: open a
page, wait until its script says it is ready, evaluate JavaScript in it, record console errors,
uncaught exceptions and every network request, and take screenshots."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


class Browser:
    """One headless Chromium with one page; ``errors`` and ``requests`` fill as pages load."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900):
        import websocket

        binary = find_chromium()
        if binary is None:
            raise RuntimeError("no chromium on PATH")
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--disable-sync",
             "--disable-component-update", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools server")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.load(reply)
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip

    def _event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        self.events.append(message)

    def send(self, method: str, params: dict | None = None) -> dict:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def evaluate(self, expression: str):
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(
        self, path: Path, fragment: str = "", timeout: float = 60, ready: str | None = None
    ) -> float:
        """Load ``path`` and wait until ``document.body.dataset.readyMs`` is set (or the
        JavaScript expression ``ready`` is truthy); returns the seconds from navigation to ready
        as the page measured them (``performance.now()``; 0 with ``ready``)."""
        self.send("Page.navigate", {"url": "about:blank"})  # no probe can see the last page
        while self.evaluate("location.href") != "about:blank":
            time.sleep(0.02)
        self.errors.clear()
        self.requests.clear()
        self.send("Page.navigate", {"url": path.resolve().as_uri() + fragment})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = ready or "document.body && document.body.dataset.readyMs || null"
            done = self.evaluate(probe)
            if done:
                return 0.0 if ready else float(done) / 1000
            time.sleep(0.05)
        raise TimeoutError(f"{path} never became ready; errors: {self.errors}")

    def outside_requests(self, path: Path) -> list[str]:
        """Requests other than the page itself."""
        own = path.resolve().as_uri()
        return [u for u in self.requests if u.split("#")[0] != own]

    def screenshot(
        self, path: Path, *, top: float = 0, height: float | None = None, quality: int | None = None
    ) -> Path:
        """A PNG (or, with ``quality``, a JPEG) of the page from ``top`` down ``height`` pixels
        (the viewport's height when None)."""
        params: dict = {"format": "jpeg" if quality else "png", "captureBeyondViewport": True}
        if quality:
            params["quality"] = quality
        width, viewport = self.evaluate("[document.documentElement.clientWidth, innerHeight]")
        params["clip"] = {
            "x": 0,
            "y": top,
            "width": width,
            "height": height or viewport,
            "scale": 1,
        }
        data = self.send("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def shoot(browser: Browser, page: Path, name: str, height: int | None = None) -> Path:
    """A screenshot of the page, checked to hold something; kept in $SAEEMBED_SCREENSHOTS when
    that is set (to look at them), else beside the page."""
    keep = os.environ.get("SAEEMBED_SCREENSHOTS")
    target = Path(keep) / f"{name}.png" if keep else page.with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    shot = browser.screenshot(target, height=height)
    assert shot.stat().st_size > 10_000
    return shot
