"""Bad input, property-based (Hypothesis, derandomized) plus a corpus: uploads, settings and
canvas payloads. The bulk runs in-process through Flask's test client (fast); a sample goes
over real HTTP to the gunicorn-served Server1. After every upload the user's storage is
checked: an accepted file left exactly its three files, a refused one nothing at all."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness import corpus
from harness.server1 import USERS, Server
from server1 import create_app
from server1.config import Config
from studio import settings as studio_settings
from tests.hardening.support import TALLY, login_client

UPLOADS = "uploads (in-process)"
MAX_PIXELS = 4_000_000  # in-process: keeps decoding of declared-huge images quick
# Hypothesis may stop short of max_examples (nothing new to try); each test must still have
# tried most of them.
MINIMUM_SHARE = 0.8
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


class App:
    """Server1 in-process on a temporary folder, alice logged in through the real form."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.app = create_app(
            Config.from_env(
                shared_dir=str(root),
                users=dict(USERS),
                start_background=False,
                max_image_pixels=MAX_PIXELS,
                secret_key="hardening-" * 4,
            )
        )
        self.client = self.app.test_client()
        self.token = login_client(self.client, "alice")

    def files(self) -> set[str]:
        """Every file under alice's image folders, hidden ones (temporaries) included."""
        out = set()
        for folder in ("input", "resized", "output"):
            for dirpath, _, names in os.walk(self.root / "alice" / folder):
                out |= {os.path.relpath(os.path.join(dirpath, n), self.root / "alice") for n in names}
        return out

    def reset(self) -> None:
        for folder in ("input", "resized", "output"):
            shutil.rmtree(self.root / "alice" / folder, ignore_errors=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> App:
    return App(tmp_path_factory.mktemp("hardening-input") / "shared")


def check_upload(
    area: str, case: str, status: int, body: object, files: set[str], sent: list[bytes], problems: list[str]
) -> bool:
    """One upload's answer and what it left in storage (files: alice's files afterwards)."""
    if status >= 500 or not isinstance(body, dict):
        problems.append(f"answer {status}: {str(body)[:200]}")
    elif status >= 400:
        if status not in (400, 413) or not isinstance(body.get("error"), str) or not body["error"]:
            problems.append(f"refusal without a clear error: {status} {body}")
        if files:
            problems.append(f"refused, yet files were left: {sorted(files)}")
    else:
        ids = [image["id"] for image in body.get("images", [])]
        if not ids or len(ids) + len(body.get("errors", [])) != len(sent):
            problems.append(f"accepted answer does not account for every file: {body}")
        expected = set()
        for image_id in ids:
            original = [f for f in files if f.startswith(f"input/{image_id}.")]
            expected |= {f"output/thumbs/{image_id}.jpg", f"resized/{image_id}.png", *original}
            if len(original) != 1:
                problems.append(f"{image_id}: {len(original)} originals")
        if files != expected:
            problems.append(f"storage holds {sorted(files ^ expected)} beyond/short of the accepted images")
    return TALLY.check(area, case, not problems, "; ".join(problems))


def _complete(app: App) -> list[str]:
    """Every stored work copy decodes, with its longest side <= 1024 (no partial file)."""
    problems = []
    for name in app.files():
        if name.startswith("resized/"):
            try:
                with Image.open(app.root / "alice" / name) as image:
                    image.load()
                    if max(image.size) > 1024:
                        problems.append(f"{name} is {image.size}")
            except Exception as e:
                problems.append(f"{name}: {e}")
    return problems


def post(app: App, area: str, case: str, uploads: list[tuple[bytes, str]]) -> bool:
    data = {"file": [(io.BytesIO(content), name) for content, name in uploads]}
    answer = app.client.post("/upload", data=data, headers={"X-CSRFToken": app.token})
    body = answer.get_json(silent=True)
    broken = _complete(app) if answer.status_code == 200 else []
    held = check_upload(area, case, answer.status_code, body, app.files(), [c for c, _ in uploads], broken)
    app.reset()
    return held


# -- uploads -------------------------------------------------------------------------------------
def test_corpus_of_hostile_and_odd_files(app: App) -> None:
    cases = {**corpus.valid(), **corpus.hostile()}
    for name, data in cases.items():
        post(app, UPLOADS, f"corpus {name}", [(data, name)])
    # Names: long, unicode, paths, NUL, control characters, reserved names.
    jpeg = corpus.valid()["photo.jpg"]
    names = [
        "x" * 5000 + ".jpg",
        "ü" * 300 + ".jpg",
        "../../../../etc/passwd",
        "..\\..\\windows\\system32\\x.jpg",
        "/absolute/path.jpg",
        "nul\x00byte.jpg",
        "line\r\nbreak.jpg",
        ".studio",
        "models",
        "..",
        ".",
        "",
        "CON.jpg",
        "\u202eexe.jpg",
        "🙂🙂🙂.heic",
        "a/b/c.png",
    ]
    for name in names:
        post(app, UPLOADS, f"name {name[:40]!r}", [(jpeg, name)])
    TALLY.note(UPLOADS, f"corpus: {len(cases)} files (every format/mode, truncations, bombs) + {len(names)} names")
    TALLY.assert_held(UPLOADS, minimum=len(cases) + len(names))


def test_random_bytes(app: App) -> None:
    @settings(FUZZ, max_examples=600)
    @given(data=st.binary(max_size=3000), ext=st.sampled_from(["jpg", "png", "heic", "webp", "tif", "bin", ""]))
    def case(data: bytes, ext: str) -> None:
        assert post(app, UPLOADS, f"random {len(data)} bytes .{ext}", [(data, f"random.{ext}")])

    case()
    TALLY.note(UPLOADS, "Hypothesis (derandomized): random bytes")
    TALLY.assert_held(UPLOADS, minimum=MINIMUM_SHARE * 600)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid file, then truncated, bytes flipped, a block cut out or another file's tail spliced in."""
    files = corpus.valid()
    name = draw(st.sampled_from(sorted(files)))
    data = bytearray(files[name])
    how = draw(st.sampled_from(["truncate", "flip", "cut", "splice", "header"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
    elif how == "cut":
        start = draw(st.integers(0, len(data) - 1))
        del data[start : start + draw(st.integers(1, 512))]
    elif how == "splice":
        other = files[draw(st.sampled_from(sorted(files)))]
        data = data[: draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))) :]
    else:  # the header area, where sizes and offsets live
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, min(64, len(data) - 1)))
            data[at] = draw(st.integers(0, 255))
    return f"{how}-{name}", bytes(data)


def test_damaged_images(app: App) -> None:
    @settings(FUZZ, max_examples=900)
    @given(case=damaged())
    def case(case: tuple[str, bytes]) -> None:
        name, data = case
        assert post(app, UPLOADS, f"damaged {name} ({len(data)} bytes)", [(data, name.split("-", 1)[1])])

    case()
    TALLY.note(UPLOADS, "Hypothesis (derandomized): damaged images")
    TALLY.assert_held(UPLOADS, minimum=MINIMUM_SHARE * 900)


def test_file_names(app: App) -> None:
    @settings(FUZZ, max_examples=300)
    @given(name=st.text(max_size=400), source=st.sampled_from(["photo.jpg", "photo.heic", "alpha.png", "photo.webp"]))
    def case(name: str, source: str) -> None:
        assert post(app, UPLOADS, f"name {name[:30]!r}", [(corpus.valid()[source], name)])

    case()
    TALLY.note(UPLOADS, "Hypothesis (derandomized): file names")
    TALLY.assert_held(UPLOADS, minimum=MINIMUM_SHARE * 300)


def test_several_files_in_one_request(app: App) -> None:
    everything = {**corpus.valid(), **corpus.hostile()}

    @settings(FUZZ, max_examples=150)
    @given(
        picks=st.lists(
            st.one_of(st.sampled_from(sorted(corpus.valid())), st.sampled_from(sorted(corpus.hostile())[:40])),
            min_size=1,
            max_size=4,
        )
    )
    def case(picks: list[str]) -> None:
        assert post(app, UPLOADS, f"multi {picks}", [(everything[p], p) for p in picks])

    case()
    TALLY.note(UPLOADS, "Hypothesis (derandomized): multi-file requests")
    TALLY.assert_held(UPLOADS, minimum=MINIMUM_SHARE * 150)


# -- settings and canvas payloads ----------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
KEYS = sorted(studio_settings.DEFAULTS)


def _valid_settings() -> st.SearchStrategy[dict]:
    """Changes inside the settings ranges (docs/architecture.md "Settings"): always accepted."""
    fields = {
        "sam_model": st.sampled_from(studio_settings.CHOICES["sam_model"]),
        "points_per_side": st.integers(8, 128),
        "pred_iou_thresh": st.floats(0.5, 0.99),
        "stability_score_thresh": st.floats(0.5, 0.99),
        "crop_n_layers": st.integers(0, 3),
        "mode": st.sampled_from(["auto", "sam", "matte", "birefnet"]),
        "min_area": st.integers(0, 1_000_000),
        "max_clippings": st.integers(1, 500),
        "soft_edges": st.booleans(),
    }
    return st.fixed_dictionaries({}, optional=fields)


def _settings_file(app: App) -> bytes | None:
    path = app.root / "alice" / "config" / "settings.json"
    return path.read_bytes() if path.exists() else None


def check_settings(app: App, body: bytes, must_accept: bool) -> bool:
    area = "settings payloads"
    before = _settings_file(app)
    answer = app.client.post(
        "/api/settings", data=body, headers={"X-CSRFToken": app.token, "Content-Type": "application/json"}
    )
    reply = answer.get_json(silent=True) or {}
    case = f"POST /api/settings {body[:80]!r}"
    if answer.status_code == 200:
        stored = json.loads(_settings_file(app) or b"{}")
        merged = reply.get("settings")
        in_range = all(_setting_ok(k, v) for k, v in (merged or {}).items()) and set(merged or {}) == set(KEYS)
        return TALLY.check(area, case, merged == stored and in_range, f"stored {stored} answered {merged}")
    else:
        clear = answer.status_code == 400 and isinstance(reply.get("error"), str) and reply["error"]
        unchanged = _settings_file(app) == before
        return TALLY.check(area, case, bool(clear) and unchanged and not must_accept, f"{answer.status_code} {reply}")


def _setting_ok(key: str, value: object) -> bool:
    if key in studio_settings.CHOICES:
        return value in studio_settings.CHOICES[key]
    if key in studio_settings.SWITCHES:
        return isinstance(value, bool)
    low, high = {**studio_settings.INT_RANGES, **studio_settings.FLOAT_RANGES}[key]
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


@settings(FUZZ, max_examples=300)
@given(changes=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12), JSON, max_size=4) | JSON)
def test_random_settings(app: App, changes: object) -> None:
    assert check_settings(app, json.dumps(changes).encode(), must_accept=False)


@settings(FUZZ, max_examples=100)
@given(changes=_valid_settings())
def test_valid_settings_are_accepted(app: App, changes: dict) -> None:
    assert check_settings(app, json.dumps(changes).encode(), must_accept=True)


@settings(FUZZ, max_examples=100)
@given(body=st.binary(max_size=200))
def test_settings_garbage_bodies(app: App, body: bytes) -> None:
    assert check_settings(app, body, must_accept=False)


def test_settings_corpus(app: App) -> None:
    bodies = [
        b"",
        b"null",
        b"[]",
        b'"vit_l"',
        b"{",
        b'{"pred_iou_thresh": ' + b"9" * 400 + b"}",
        b'{"points_per_side": ' + b"9" * 400 + b"}",
        b'{"pred_iou_thresh": 1e400}',
        b'{"pred_iou_thresh": NaN}',
        b'{"stability_score_thresh": -Infinity}',
        b'{"points_per_side": "32"}',
        b'{"points_per_side": 32.0}',
        b'{"points_per_side": true}',
        b'{"mode": ["sam"]}',
        b'{"sam_model": {"$ne": null}}',
        b'{"__proto__": {"admin": true}}',
        b'{"' + b"k" * 10000 + b'": 1}',
        json.dumps({"min_area": 10**30}).encode(),
        b'{"mode":' * 5000 + b"1" + b"}" * 5000,
        b"[" * 50000,
    ]
    for body in bodies:
        check_settings(app, body, must_accept=False)
    TALLY.note("settings payloads", f"Hypothesis JSON (random, valid-only, raw bytes) + {len(bodies)} corpus bodies")
    TALLY.assert_held("settings payloads", minimum=len(bodies))


def check_canvas(app: App, body: bytes) -> bool:
    area = "canvas payloads"
    answer = app.client.put(
        "/api/canvas", data=body, headers={"X-CSRFToken": app.token, "Content-Type": "application/json"}
    )
    case = f"PUT /api/canvas {body[:60]!r}"
    try:
        sent = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        sent = None
    stored = app.client.get("/api/canvas").get_data(as_text=True)
    try:
        back = json.loads(stored, parse_constant=_refuse_constant)  # strict JSON: the page parses it
    except ValueError:
        return TALLY.check(area, case, False, f"GET /api/canvas is not strict JSON: {stored[:100]}")
    if answer.status_code == 200:
        return TALLY.check(area, case, isinstance(sent, dict) and back == sent, f"stored {stored[:100]}")
    else:
        reply = answer.get_json(silent=True) or {}
        clear = answer.status_code in (400, 413) and isinstance(reply.get("error"), str) and reply["error"]
        return TALLY.check(area, case, bool(clear) and not (isinstance(sent, dict) and len(body) < 100_000), str(reply))


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


@settings(FUZZ, max_examples=200)
@given(canvas=JSON | st.dictionaries(st.text(max_size=8), JSON, max_size=5))
def test_random_canvas(app: App, canvas: object) -> None:
    assert check_canvas(app, json.dumps(canvas).encode())


def test_canvas_corpus(app: App) -> None:
    for body in [b"", b"{", b"[1,2]", b'{"a": NaN}', b'{"a": Infinity}', b'{"a":' * 5000 + b"1" + b"}" * 5000]:
        check_canvas(app, body)
    check_canvas(app, json.dumps({"items": ["x" * 1000] * 3000}).encode())  # over the size limit
    TALLY.note("canvas payloads", "Hypothesis JSON + NaN/Infinity, deep nesting, oversize")
    TALLY.assert_held("canvas payloads", minimum=7)


# -- a sample over real HTTP --------------------------------------------------------------------
def test_upload_sample_over_http(server1: Server) -> None:
    area = "uploads (HTTP sample)"
    session = server1.login("alice")
    root = Path(server1.env["SHARED_DIR"]) / "alice"
    rng = random.Random(1234)
    everything = {**corpus.valid(), **corpus.hostile()}
    picks = sorted(everything)
    cases = [(everything[p], p) for p in picks]
    cases += [(rng.randbytes(rng.randint(0, 4000)), f"random-{i}.jpg") for i in range(40)]
    for data, name in cases:
        answer = session.post(server1.url + "/upload", files={"file": (name, data)}, timeout=60)
        try:
            body = answer.json()
        except ValueError:
            body = answer.text
        files = set()
        for folder in ("input", "resized", "output"):
            for dirpath, _, names in os.walk(root / folder):
                files |= {os.path.relpath(os.path.join(dirpath, n), root) for n in names}
        check_upload(area, f"HTTP {name}", answer.status_code, body, files, [data], [])
        for folder in ("input", "resized", "output"):
            shutil.rmtree(root / folder, ignore_errors=True)
    too_big = session.post(
        server1.url + "/upload", files={"file": ("big.jpg", b"\xff" * (51 * 1024 * 1024))}, timeout=120
    )
    TALLY.check(area, "51 MB upload -> 413 JSON", too_big.status_code == 413 and "too large" in too_big.json()["error"])
    TALLY.note(area, f"{len(cases) + 1} uploads through gunicorn: corpus, random bytes, 51 MB (MAX_UPLOAD_MB 50)")
    TALLY.assert_held(area, minimum=100)
