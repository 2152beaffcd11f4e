"""Errors met by a browser get a page in the app's style with a way back to the album; API callers and
JSON requests keep their JSON errors. Neither shows a traceback or Werkzeug's wording."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask, abort
from flask.testing import FlaskClient

from harness.server1 import USERS, csrf_of
from server1.app import create_app
from server1.config import Config

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}
LEAKS = ("Traceback", "Werkzeug", "werkzeug", "The requested URL", "RuntimeError", "broken on purpose")


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = create_app(Config.from_env(shared_dir=str(tmp_path / "shared"), users=dict(USERS), start_background=False))

    def fail(code: int) -> None:
        if code == 500:
            raise RuntimeError("broken on purpose")
        abort(code)

    app.add_url_rule("/failing/<int:code>", view_func=fail)  # a page whose handler fails with the code
    yield app
    app.extensions["server1"].events.stop()


@pytest.fixture
def alice(app: Flask) -> FlaskClient:
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    client.post("/login", data={"username": "alice", "password": USERS["alice"], "csrf_token": token})
    return client


def assert_page(answer, status: int, words: str) -> None:
    assert answer.status_code == status
    assert answer.mimetype == "text/html"
    page = answer.text
    assert '<link rel="stylesheet" href="/static/css/app.css">' in page and "SAM Studio" in page
    assert words in page, page
    assert 'href="/"' in page and "Back to your album" in page
    assert not [leak for leak in LEAKS if leak in page], page


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/nope", 404, "There is nothing at this address"),
        ("/edit/no-such-photo", 404, "There is nothing at this address"),
        ("/failing/404", 404, "There is nothing at this address"),
        ("/failing/403", 403, "belongs to another account"),
        ("/failing/413", 413, "The upload is too large (limit"),
        ("/failing/500", 500, "It has been logged"),
    ],
)
def test_a_browser_gets_a_page_saying_what_happened(alice: FlaskClient, url: str, status: int, words: str) -> None:
    assert_page(alice.get(url, headers=HTML), status, words)


def test_a_browser_without_a_session_gets_the_page_for_an_unknown_address(app: Flask) -> None:
    assert_page(app.test_client().get("/nope", headers=HTML), 404, "There is nothing at this address")


@pytest.mark.parametrize("code", [403, 404, 413, 500])
def test_api_callers_and_json_requests_keep_json_errors(alice: FlaskClient, code: int) -> None:
    for answer in (
        alice.get(f"/failing/{code}", headers=JSON),
        alice.get(f"/failing/{code}", headers=HTML, json={}),  # a JSON body: a script, whatever it accepts
    ):
        assert answer.status_code == code and answer.is_json and answer.json["error"]
        assert not [leak for leak in LEAKS if leak in answer.text], answer.text
    api = alice.get("/api/nothing", headers=HTML)
    assert api.status_code == 404 and api.is_json and "<html" not in api.text
