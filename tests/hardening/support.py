"""Helpers of the hardening suite: the tally of attacks tried and held, and raw HTTP.

Every attack is recorded with TALLY.check(area, case, held): the conftest prints the table
at the end of the run, and each test fails on its own failures (TALLY.assert_held counts only
the cases of the running test: the conftest calls TALLY.begin() before each test).
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

import requests

from harness.server1 import USERS, csrf_of


@dataclass
class Area:
    tried: int = 0
    held: int = 0
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Tally:
    """Cases per area: tried, held, and the first failures in words."""

    def __init__(self) -> None:
        self.areas: dict[str, Area] = {}  # the whole run, for the summary
        self.current: dict[str, Area] = {}  # the running test, for its assertions
        self._lock = threading.Lock()

    def _area(self, area: str) -> Area:
        return self.areas.setdefault(area, Area())

    def begin(self) -> None:
        """A test starts: its assertions see only its own cases."""
        with self._lock:
            self.current = {}

    def check(self, area: str, case: str, held: bool, detail: str = "") -> bool:
        with self._lock:
            for found in (self._area(area), self.current.setdefault(area, Area())):
                found.tried += 1
                if held:
                    found.held += 1
                elif len(found.failures) < 200:
                    found.failures.append(f"{case}: {detail}" if detail else case)
        return held

    def note(self, area: str, text: str) -> None:
        """What was tried, in words, for the summary."""
        with self._lock:
            self._area(area).notes.append(text)

    def assert_held(self, area: str, minimum: int = 1) -> None:
        """The running test tried at least minimum cases of area, and all held."""
        found = self.current.get(area, Area())
        assert found.tried >= minimum, f"{area}: only {found.tried} cases tried, expected at least {minimum}"
        assert not found.failures, f"{area}: {len(found.failures)} of {found.tried} failed:\n" + "\n".join(
            found.failures[:30]
        )

    def lines(self) -> list[str]:
        width = max([len(a) for a in self.areas] + [4])
        out = [f"{'area':<{width}}  {'tried':>6}  {'held':>6}  {'failed':>6}", "-" * (width + 24)]
        total = Area()
        for name, area in self.areas.items():
            out.append(f"{name:<{width}}  {area.tried:>6}  {area.held:>6}  {area.tried - area.held:>6}")
            total.tried += area.tried
            total.held += area.held
        out.append("-" * (width + 24))
        out.append(f"{'total':<{width}}  {total.tried:>6}  {total.held:>6}  {total.tried - total.held:>6}")
        for name, area in self.areas.items():
            for note in area.notes:
                out.append(f"  {name}: {note}")
            for failure in area.failures[:10]:
                out.append(f"  {name} FAILED: {failure}")
        return out


TALLY = Tally()


@dataclass
class RawAnswer:
    status_code: int
    head: str
    body: bytes


def raw_get(url: str, path: bytes, cookie: str = "", timeout: float = 10) -> RawAnswer:
    """GET with the request target sent byte for byte (requests/urllib3 would normalise
    '..' and refuse NUL): what an attacker's own client sends."""
    host, port = url.removeprefix("http://").split(":")
    request = b"GET " + path + b" HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n"
    if cookie:
        request += b"Cookie: " + cookie.encode() + b"\r\n"
    request += b"Connection: close\r\n\r\n"
    chunks = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return RawAnswer(int(match.group(1)) if match else 0, head.decode("latin-1"), body)


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def login_client(client, user: str) -> str:
    """Log a Flask test client in through the real form; returns the CSRF token to send."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"username": user, "password": USERS[user], "csrf_token": token})
    assert answer.status_code == 303, answer.get_data(as_text=True)[:300]
    return csrf_of(client.get("/").get_data(as_text=True))
