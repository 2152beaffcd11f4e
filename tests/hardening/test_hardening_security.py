"""Security attacks on a running Server1 (gunicorn on 127.0.0.1): route scan, cross-user
isolation and path tricks, login (throttling, fixation, logout), CSRF, headers and CSP."""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import os
import re
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser
from werkzeug.routing import PathConverter

from harness.browser import wait_in_page
from harness.images import encode, photo
from harness.server1 import USERS, Server, csrf_of
from server1 import auth, create_app
from server1.config import Config
from studio import layout
from studio.storage import open_storage
from tests.hardening.support import TALLY, cookie_header, raw_get
from tests.server1.support import finish_job, samples

STATE_CHANGING = {"POST", "PUT", "DELETE", "PATCH"}
PUBLIC = {"auth.login", "pages.healthz", "static"}
SECRET_MARK = b"OUTSIDE-THE-ROOT-SECRET-7f3a"


def url_map_routes() -> list[tuple[str, str, str]]:
    """(method, concrete path, endpoint) for every rule of the app's URL map."""
    app = create_app(
        Config.from_env(
            shared_dir="/tmp/hardening-urlmap", users=dict(USERS), start_background=False, secret_key="k" * 40
        )
    )
    out = []
    for rule in app.url_map.iter_rules():
        values = {
            name: ("alice/input/x.jpg" if isinstance(conv, PathConverter) else "some-image")
            for name, conv in rule._converters.items()
        }
        if rule.endpoint == "static":
            values = {"filename": "css/app.css"}
        path = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods - {"OPTIONS"}):
            out.append((method, path, rule.endpoint))
    return out


@pytest.fixture(scope="module")
def storage(server1: Server):
    return open_storage(server1.env["SHARED_DIR"])


@pytest.fixture(scope="module")
def alice(server1: Server) -> requests.Session:
    return server1.login("alice")


@pytest.fixture(scope="module")
def bob(server1: Server) -> requests.Session:
    return server1.login("bob")


@pytest.fixture(scope="module")
def alice_files(server1: Server, alice: requests.Session, storage) -> dict[str, bytes]:
    """Alice's album with originals of several formats and a finished job with clippings:
    {storage key: bytes} of every file of hers."""
    sample = samples()
    files = [("file", (name, sample[name])) for name in ("photo.jpg", "photo.png", "photo.heic", "alpha.png")]
    answer = alice.post(server1.url + "/upload", files=files, timeout=60)
    assert answer.status_code == 200, answer.text
    first = answer.json()["images"][0]["id"]
    finish_job(storage, "alice", first, clippings=3)
    storage.write(layout.mask("alice", first, 0), encode(photo(64, 48).convert("L"), "PNG"))
    storage.write(layout.boxes("alice", first, "yolo"), encode(photo(64, 48), "PNG"))
    storage.write(layout.canvas("alice"), b'{"items": [{"note": "ALICE-CANVAS-MARK"}]}')
    alice.post(server1.url + "/api/settings", json={"points_per_side": 77}, timeout=10).raise_for_status()
    return {e.key: storage.read(e.key) for e in storage.list("alice/")}


def _marks(files: dict[str, bytes]) -> list[bytes]:
    """A distinctive slice of each protected file: its presence in an answer is a leak."""
    out = [SECRET_MARK, b"root:x:0:0", b"ALICE-CANVAS-MARK"]
    for data in files.values():
        if len(data) >= 96:
            middle = len(data) // 2
            out.append(data[middle : middle + 64])
    return out


def _leaks(body: bytes, marks: list[bytes]) -> bool:
    return any(mark in body for mark in marks)


# -- route scan ------------------------------------------------------------------------------
def test_every_route_of_the_url_map_needs_a_session(server1: Server) -> None:
    routes = url_map_routes()
    assert len(routes) >= 15, routes
    area = "route scan (no session)"
    for method, path, endpoint in routes:
        answer = requests.request(method, server1.url + path, allow_redirects=False, timeout=10)
        if endpoint in PUBLIC:
            # Public: login (GET form; POST without a CSRF token refused), health, static assets.
            expected = {"GET": 200, "HEAD": 200, "POST": 400}[method]
            held = answer.status_code == expected
        else:
            to_login = answer.status_code in (302, 303) and answer.headers.get("Location", "").endswith("/login")
            held = to_login or (
                answer.status_code == 401 and (method == "HEAD" or "login required" in answer.json().get("error", ""))
            )
        TALLY.check(area, f"{method} {path} ({endpoint})", held, f"{answer.status_code} {answer.text[:120]!r}")
    TALLY.note(area, f"{len(routes)} method+rule pairs from app.url_map; public: {', '.join(sorted(PUBLIC))}")
    TALLY.assert_held(area, minimum=len(routes))


# -- cross-user isolation ----------------------------------------------------------------------
def _tricks(alice_key: str, outside: Path) -> Iterator[tuple[str, bytes]]:
    """Request targets bob might send to reach alice's file, /etc/passwd or a file beside the root."""
    dots = ["..", "%2e%2e", "%2E%2E", ".%2e", "%252e%252e", "%c0%ae%c0%ae", "\u2025", "\uff0e\uff0e", "...."]
    seps = ["/", "%2f", "%2F", "%252f", "\\", "%5c", "%255c", "\u2215", "\uff0f", "%c0%af"]
    targets = {"alice": alice_key, "passwd": "etc/passwd", "outside": f"{outside.parent.name}/{outside.name}"}
    for (dot, sep), (name, target) in itertools.product(itertools.product(dots, seps), targets.items()):
        up = sep.join([dot] * (2 if name == "alice" else 8))
        path = "/files/bob/input/" + up + sep + target.replace("/", sep)
        yield f"dots {dot!r} sep {sep!r} -> {name}", _quote_unicode(path)
    absolute = [
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files///" + str(outside).lstrip("/"),
        "/files/" + urllib.parse.quote(str(outside), safe=""),
        "/files/" + alice_key,
        "/files/" + alice_key.replace("/", "%2f"),
        "/files/" + alice_key.replace("alice", "ALICE"),
        "/files/" + alice_key.replace("alice", "alice%00"),
        "/files/" + alice_key + "%00.png",
        "/files/bob/input/x.jpg%00/../../../" + alice_key,
        "/files/bob/input/%00",
        "/files/./" + alice_key,
        "/files/bob/../" + alice_key,
        "/files/bob/input/" + alice_key.rpartition("/")[2],
        "/files/bob/input/..;/..;/" + alice_key,
        "/files/bob%2f..%2f" + alice_key.replace("/", "%2f"),
        "/files/\u0430lice/" + alice_key.partition("/")[2],  # Cyrillic a
        "/files/alic\u0435/" + alice_key.partition("/")[2],  # Cyrillic e
        "/files/\uff41lice/" + alice_key.partition("/")[2],  # fullwidth a
        "/files/.studio/secret_key",
        "/files/models/vit_l.pth",
        "/static/../../../../etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static//etc/passwd",
        "/static/..\\..\\..\\server1\\app.py",
        "/api/images/../../files/" + alice_key + "/clippings.zip",
        "/api/images/" + "..%2f" * 3 + "alice/clippings.zip",
    ]
    for path in absolute:
        yield f"path {path[:70]!r}", _quote_unicode(path)


def _quote_unicode(path: str) -> bytes:
    """Non-ASCII characters sent as percent-encoded UTF-8 (what a browser sends); the rest raw."""
    return "".join(c if ord(c) < 128 else urllib.parse.quote(c) for c in path).encode("latin-1")


def _plant_symlinks(root: Path, alice_files: dict[str, bytes], outside: Path) -> list[str]:
    """Links in bob's folders to alice's files, her folders and a file outside the root;
    returns the URLs of /files/ that reach them."""
    alice_input = next(k for k in alice_files if k.startswith("alice/input/"))
    alice_crop = next(k for k in alice_files if k.startswith("alice/output/crops/"))
    links = {
        "bob/input/abs-link.jpg": root / alice_input,
        "bob/input/rel-link.jpg": Path("../../" + alice_input),
        "bob/input/outside.jpg": outside,
        "bob/input/passwd.png": Path("/etc/passwd"),
        "bob/resized/link-job.png": root / alice_input,
        "bob/output/thumbs": root / "alice/output/thumbs",  # a whole folder
        "bob/output/masks": Path("/etc"),
        "bob/output/crops/" + Path(alice_crop).name: root / alice_crop,
        "bob/config/canvas.json": root / layout.canvas("alice"),
        "bob/config/settings.json": root / layout.settings("alice"),
    }
    # A status record in bob's folder naming alice's clipping: the zip must not follow the link.
    done = {"state": "done", "attempts": 1, "clippings": [Path(alice_crop).name]}
    (root / "bob/output/status").mkdir(parents=True, exist_ok=True)
    (root / "bob/output/status/planted.json").write_text(json.dumps(done))
    for link, target in links.items():
        path = root / link
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            os.rmdir(path)
        os.symlink(target, path)
    urls = [
        "/files/bob/input/abs-link.jpg",
        "/files/bob/input/rel-link.jpg",
        "/files/bob/input/outside.jpg",
        "/files/bob/input/passwd.png",
        "/files/bob/resized/link-job.png",
        "/files/bob/output/masks/passwd",
        "/files/bob/output/crops/" + Path(alice_crop).name,
        "/api/images/planted/clippings.zip",
    ]
    urls += ["/files/bob/output/thumbs/" + k.rpartition("/")[2] for k in alice_files if "/thumbs/" in k]
    return urls


def test_bob_never_gets_alices_bytes_or_files_outside_the_root(
    server1: Server, alice: requests.Session, bob: requests.Session, alice_files: dict[str, bytes], storage
) -> None:
    root = Path(storage.root)
    outside = root.parent / "outside-secret.txt"
    outside.write_bytes(SECRET_MARK)
    marks = _marks(alice_files)
    cookie = cookie_header(bob)
    area = "cross-user isolation"

    # 1. Every file URL alice's album exposes, and every file of hers in storage.
    alice_album = alice.get(server1.url + "/api/images", timeout=10).json()["images"]
    urls = set()
    for image in alice_album:
        urls |= {image["original_url"], image["thumb_url"]} | {image["zip_url"]} - {None}
        for clip in image["clippings"]:
            urls |= {clip["url"], clip["thumb_url"]}
    assert any("/crops/" in u for u in urls), "alice's album shows no clippings to attack"
    urls |= {"/files/" + key for key in alice_files}
    urls |= {f"/api/images/{image['id']}/clippings.zip" for image in alice_album}
    for url in sorted(urls):
        answer = raw_get(server1.url, url.encode(), cookie)
        held = answer.status_code == 404 and not _leaks(answer.body, marks)
        TALLY.check(area, f"bob GET {url}", held, f"{answer.status_code}")
    TALLY.note(area, f"{len(urls)} URLs of alice's album and storage requested as bob")

    # 2. Path tricks.
    alice_key = next(k for k in alice_files if k.startswith("alice/input/"))
    tricks = list(_tricks(alice_key, outside))
    for case, path in tricks:
        answer = raw_get(server1.url, path, cookie)
        if answer.status_code == 308:  # werkzeug merges '//': follow it once, as a browser would
            location = re.search(r"(?im)^location: (\S+)", answer.head)
            target = urllib.parse.urlsplit(location.group(1)).path if location else ""
            answer = raw_get(server1.url, target.encode("latin-1"), cookie)
            case += f" (redirected to {target[:60]})"
        held = answer.status_code in (400, 404, 405) and not _leaks(answer.body, marks)
        TALLY.check(area, case, held, f"{answer.status_code} {answer.body[:80]!r}")
    TALLY.note(area, f"{len(tricks)} path tricks (dot-dot, %-encoding, double encoding, backslashes, NUL, look-alikes)")

    # 3. Symlinks planted in bob's folders, to alice's files and out of the root.
    links = _plant_symlinks(root, alice_files, outside)
    try:
        for url in links:
            answer = raw_get(server1.url, url.encode(), cookie)
            held = answer.status_code in (404, 503) and not _leaks(answer.body, marks)
            TALLY.check(area, f"symlink {url}", held, f"{answer.status_code} {answer.body[:100]!r}")
        # Bob's own API answers must not be fed by the links either.
        for url in ["/api/images", "/api/canvas", "/api/settings", "/api/status"]:
            answer = raw_get(server1.url, url.encode(), cookie)
            held = answer.status_code in (200, 503) and not _leaks(answer.body, marks)
            TALLY.check(area, f"symlink-fed {url}", held, f"{answer.status_code} {answer.body[:200]!r}")
        bob_album = bob.get(server1.url + "/api/images", timeout=10).json().get("images", [])
        for image in bob_album:
            for url in [image["original_url"], image["thumb_url"]] + [c["url"] for c in image["clippings"]]:
                answer = raw_get(server1.url, url.encode(), cookie)
                TALLY.check(area, f"bob's album link {url}", not _leaks(answer.body, marks), str(answer.status_code))
        settings = bob.get(server1.url + "/api/settings", timeout=10).json().get("settings", {})
        TALLY.check(area, "symlinked settings.json", settings.get("points_per_side") != 77, str(settings))
        TALLY.note(area, f"{len(links)} symlinks planted in bob's folders (files, folders, /etc, outside the root)")
    finally:
        shutil.rmtree(root / "bob")  # the links go (rmtree never follows them); bob starts clean again
    TALLY.assert_held(area, minimum=100)


# -- login -----------------------------------------------------------------------------------
def test_login_compares_in_constant_time() -> None:
    """Read, not timed: check_login compares through hmac.compare_digest and with no '=='."""
    area = "login"
    source = inspect.getsource(auth.check_login)
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "hmac.compare_digest"]
    compares = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    TALLY.check(area, "check_login uses hmac.compare_digest for name and password", len(calls) >= 2, source)
    TALLY.check(area, "check_login has no ==/!= comparison", not compares, str(compares))
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For)]
    early = [n for loop in loops for n in ast.walk(loop) if isinstance(n, (ast.Return, ast.Break))]
    TALLY.check(area, "every user is checked (no early exit from the loop)", bool(loops) and not early, source)
    TALLY.note(area, "constant-time compare checked in the source (no timing measured)")
    TALLY.assert_held(area)


def test_brute_force_is_throttled(tmp_path: Path) -> None:
    server = Server(str(tmp_path / "shared"), gunicorn=True).start()
    area = "login"
    try:
        client = requests.Session()
        statuses = []
        for n in range(14):
            token = csrf_of(client.get(server.url + "/login", timeout=10).text)
            answer = client.post(
                server.url + "/login",
                data={"username": "alice", "password": f"guess-{n}", "csrf_token": token},
                timeout=10,
            )
            statuses.append(answer.status_code)
            if n >= 10:
                throttled = answer.status_code == 429
                TALLY.check(area, f"failed login #{n + 1} throttled", throttled, str(answer.status_code))
                TALLY.check(area, f"429 #{n + 1} says why", "Too many failed logins" in answer.text, answer.text[:200])
        TALLY.check(area, "first 10 failures answer 401", statuses[:10] == [401] * 10, str(statuses))
        # Once throttled, even the right password waits: the guesser cannot tell.
        token = csrf_of(client.get(server.url + "/login", timeout=10).text)
        answer = client.post(
            server.url + "/login",
            data={"username": "alice", "password": USERS["alice"], "csrf_token": token},
            timeout=10,
        )
        TALLY.check(area, "right password while throttled -> 429", answer.status_code == 429, str(answer.status_code))
        TALLY.note(area, "14 wrong passwords in a row from one client, then the right one")
    finally:
        server.stop()
    TALLY.assert_held(area)


def test_session_fixation_and_logout(server1: Server) -> None:
    area = "session"
    client = requests.Session()
    token = csrf_of(client.get(server1.url + "/login", timeout=10).text)
    planted = client.cookies.get("studio_session")
    TALLY.check(area, "a cookie exists before login (what a fixation attack plants)", bool(planted))
    answer = client.post(
        server1.url + "/login",
        data={"username": "bob", "password": USERS["bob"], "csrf_token": token},
        allow_redirects=False,
        timeout=10,
    )
    fresh = client.cookies.get("studio_session")
    TALLY.check(area, "login answers 303 with a new cookie", answer.status_code == 303 and fresh != planted)
    old = requests.get(
        server1.url + "/api/images", cookies={"studio_session": planted}, allow_redirects=False, timeout=10
    )
    TALLY.check(area, "the pre-login cookie is not logged in", old.status_code == 401, str(old.status_code))
    again = server1.login("bob")
    TALLY.check(
        area, "two logins get different sessions", again.cookies.get("studio_session") != fresh, "same cookie reused"
    )
    # Logout ends the session for good: a copy of the cookie taken before is refused.
    copy = {"studio_session": fresh}
    before = requests.get(server1.url + "/api/images", cookies=copy, timeout=10)
    TALLY.check(area, "cookie works before logout", before.status_code == 200, str(before.status_code))
    page_token = csrf_of(client.get(server1.url + "/", timeout=10).text)
    out = client.post(server1.url + "/logout", headers={"X-CSRFToken": page_token}, allow_redirects=False, timeout=10)
    TALLY.check(area, "logout answers a redirect", out.status_code == 303, str(out.status_code))
    after = requests.get(server1.url + "/api/images", cookies=copy, allow_redirects=False, timeout=10)
    TALLY.check(area, "the old cookie is refused after logout", after.status_code == 401, str(after.status_code))
    page = requests.get(server1.url + "/", cookies=copy, allow_redirects=False, timeout=10)
    TALLY.check(area, "the page redirects to login after logout", page.status_code in (302, 303), str(page.status_code))
    set_cookie = answer.headers.get("Set-Cookie", "")
    TALLY.check(area, "session cookie HttpOnly", "HttpOnly" in set_cookie, set_cookie)
    TALLY.check(area, "session cookie SameSite=Lax", "SameSite=Lax" in set_cookie, set_cookie)
    TALLY.note(area, "fixation (pre-login cookie), fresh session per login, cookie replay after logout")
    TALLY.assert_held(area)


# -- CSRF ------------------------------------------------------------------------------------
def test_csrf_is_refused_on_every_state_changing_route(server1: Server, storage) -> None:
    area = "csrf"
    routes = [(m, p, e) for m, p, e in url_map_routes() if m in STATE_CHANGING]
    assert len(routes) >= 7, routes
    victim = server1.login("bob")
    upload = victim.post(
        server1.url + "/upload", files={"file": ("keep.jpg", samples()["photo.jpg"])}, timeout=30
    ).json()["images"][0]["id"]
    other = server1.login("alice")
    before = sorted(e.key for e in storage.list("bob/") if "/config/" not in e.key)
    tokens = {"no token": None, "bogus token": "not-a-token", "alice's token": other.csrf}
    for (method, path, endpoint), (kind, token) in itertools.product(routes, tokens.items()):
        path = path.replace("some-image", upload)
        headers = {"X-CSRFToken": token} if token else {}
        # A plain cookie-carrying request as a forged form would send it (no header from the page).
        answer = requests.request(
            method,
            server1.url + path,
            cookies=requests.utils.dict_from_cookiejar(victim.cookies),
            headers=headers,
            data={"username": "bob", "password": USERS["bob"]} if endpoint == "auth.login" else None,
            files={"file": ("x.jpg", samples()["photo.jpg"])} if endpoint == "upload.upload" else None,
            allow_redirects=False,
            timeout=30,
        )
        held = answer.status_code == 400 and "CSRF" in answer.text
        TALLY.check(area, f"{method} {path} with {kind}", held, f"{answer.status_code} {answer.text[:100]!r}")
    after = sorted(e.key for e in storage.list("bob/") if "/config/" not in e.key)
    TALLY.check(area, "nothing changed in bob's storage", before == after, f"{before} -> {after}")
    still = victim.get(server1.url + "/api/images", timeout=10)
    TALLY.check(area, "bob is still logged in (logout was refused)", still.status_code == 200, str(still.status_code))
    TALLY.note(area, f"{len(routes)} state-changing rules from the URL map x {len(tokens)} kinds of missing token")
    TALLY.assert_held(area, minimum=len(routes) * len(tokens))


# -- headers, CSP, uploaded content types ------------------------------------------------------
def test_security_headers_and_csp_the_page_satisfies(
    server1: Server, alice: requests.Session, browser: Browser
) -> None:
    area = "headers"
    for path in ["/login", "/", "/api/images", "/healthz"]:
        answer = alice.get(server1.url + path, timeout=10)
        csp = answer.headers.get("Content-Security-Policy", "")
        TALLY.check(area, f"{path} nosniff", answer.headers.get("X-Content-Type-Options") == "nosniff")
        TALLY.check(
            area,
            f"{path} frame denial",
            answer.headers.get("X-Frame-Options") == "DENY" and "frame-ancestors 'none'" in csp,
            str(answer.headers),
        )
        TALLY.check(area, f"{path} CSP with no inline script", "script-src 'self'" in csp and "unsafe" not in csp, csp)
    violations: list[str] = []
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(
            "window.__csp = []; document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        page.on("console", lambda m: m.type == "error" and violations.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: violations.append(f"page error: {e}"))
        page.goto(server1.url + "/login")
        login_seen = page.evaluate("window.__csp")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(USERS["alice"])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(server1.url + "/")
        page.locator("#album-summary").filter(has_not_text="Loading").wait_for()
        # Everything the page loads has loaded (a violation is reported as its load is refused).
        wait_in_page(page, "document.readyState === 'complete' && [...document.images].every(i => i.complete)")
        app_seen = page.evaluate("window.__csp")
    finally:
        context.close()
    TALLY.check(area, "login page: no CSP violation", not login_seen, str(login_seen))
    TALLY.check(area, "app page: no CSP violation", not app_seen, str(app_seen))
    TALLY.check(area, "no console error (CSP reports show there)", not violations, str(violations))
    TALLY.note(area, "CSP checked in Debian chromium through Playwright (securitypolicyviolation events)")
    TALLY.assert_held(area)


def test_uploaded_html_and_svg_never_render_as_a_page(server1: Server, alice: requests.Session) -> None:
    area = "content types"
    script = b"<html><body><script>alert(document.cookie)</script></body></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for name, data in [("page.html", script), ("image.svg", svg), ("x.jpg", script), ("x.png", svg)]:
        answer = alice.post(server1.url + "/upload", files={"file": (name, data)}, timeout=30)
        held = answer.status_code == 400 and "not an image" in answer.json()["error"]
        TALLY.check(area, f"upload of {name} ({data[:12]!r}) refused", held, answer.text[:200])
    # Polyglots: real images carrying markup, named as pages; kept, but only ever served as images.
    png = samples()["photo.png"]
    polyglots = {"poly.html": png + script, "poly.svg": png + svg, "poly.htm": samples()["photo.jpg"] + script}
    for name, data in polyglots.items():
        answer = alice.post(server1.url + "/upload", files={"file": (name, data)}, timeout=30)
        assert answer.status_code == 200, answer.text
        image = answer.json()["images"][0]
        for url in (image["original_url"], image["thumb_url"]):
            served = alice.get(server1.url + url, timeout=10)
            kind = served.headers.get("Content-Type", "")
            held = (
                served.status_code == 200
                and kind.startswith("image/")
                and served.headers.get("X-Content-Type-Options") == "nosniff"
                and "sandbox" in served.headers.get("Content-Security-Policy", "")
                and not url.endswith((".html", ".htm", ".svg"))
            )
            TALLY.check(area, f"{name} served from {url} as {kind}", held, str(served.headers))
    TALLY.note(area, "HTML/SVG uploads (also renamed) refused; image+markup polyglots served as image/* + sandbox")
    TALLY.assert_held(area)


@pytest.fixture(autouse=True)
def _no_server_errors(server1: Server) -> Iterator[None]:
    """After each test: the server logged no traceback."""
    yield
    tracebacks = re.findall(r"Traceback \(most recent call last\)", server1.output())
    assert not tracebacks, server1.output()[-3000:]
