"""Open an HTML file in headless Chromium and report what a user would see break: images that did not
load and console errors. A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (the
browser reads commands on fd 3 and writes replies on fd 4, NUL-separated JSON), so no websocket
package is needed.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def install_chromium(timeout: float = 900) -> tuple[str | None, str]:
    """Debian's chromium via apt when running as root; (path or None, reason)."""
    path = find_chromium()
    if path:
        return path, ""
    if os.name != "posix" or os.geteuid() != 0:
        return None, "chromium is not installed and the tests do not run as root (apt-get install chromium)"
    if not shutil.which("apt-get"):
        return None, "chromium is not installed and there is no apt-get here"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            if r.returncode != 0:
                return None, f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"installing chromium failed: {exc}"
    path = find_chromium()
    return (path, "") if path else (None, "apt-get installed chromium but no chromium binary was found")


class Browser:
    def __init__(self, binary: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        cmd_r, self._cmd_w = os.pipe()   # we write commands, the browser reads them on fd 3
        self._resp_r, resp_w = os.pipe()  # the browser writes replies on fd 4
        def child_fds():
            # dup2'd descriptors are inheritable; every other Python descriptor is close-on-exec, so
            # close_fds=False leaks nothing (and True would close 3 and 4 again after this runs)
            import fcntl

            r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, resp_w))  # out of the way of 3, 4
            os.dup2(r, 3)
            os.dup2(w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        argv = [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=child_fds, close_fds=False)
        os.close(cmd_r)
        os.close(resp_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        want = self._id
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == want:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._resp_r], [], [], left)
            if ready:
                chunk = os.read(self._resp_r, 1 << 16)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
                    raise RuntimeError(f"chromium closed the debugging pipe: {err}")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def wait_event(self, method: str, session: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            return True
        while time.monotonic() < deadline:
            try:
                e = self._read(deadline)
            except TimeoutError:
                return False
            self.events.append(e)
            if e.get("method") == method and e.get("sessionId") == session:
                return True
        return False

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  src: i.getAttribute('src').slice(0, 40), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight})))"""


def render(binary: str, html_path: Path, timeout: float = 60.0) -> dict:
    """Load the page; return {"images": [...], "errors": [...], "title": str, "text": str}."""
    b = Browser(binary, timeout)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            b.send(f"{domain}.enable", session=session)
        b.send("Page.navigate", {"url": Path(html_path).resolve().as_uri()}, session=session)
        loaded = b.wait_event("Page.loadEventFired", session, timeout)
        time.sleep(0.3)  # let late console messages arrive
        res = b.send("Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True}, session=session)
        images = json.loads(res["result"]["value"])
        title = b.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                       session=session)["result"]["value"]
        text = b.send("Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True},
                      session=session)["result"]["value"]
        errors = []
        for e in b.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = (str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                errors.append("console: " + " ".join(args))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                errors.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return {"loaded": loaded, "images": images, "errors": errors, "title": title, "text": text}
    finally:
        b.close()
