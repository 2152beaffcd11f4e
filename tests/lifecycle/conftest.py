"""Fixtures for the lifecycle suite: a SageMaker endpoint on the moto server, a recording
stand-in for sagemaker-runtime / Server2, a fault-injecting proxy in front of moto, and an
injectable clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import requests

from harness.aws import create_endpoint
from studio.storage import FileStorage
from tests.lifecycle.support import TEST_BOTO_CONFIG, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Recorder:
    """Answers sagemaker-runtime InvokeEndpoint (/endpoints/<name>/invocations) and Server2's
    /invocations; records every request body; fails the next `fail` requests with a 500."""

    url: str = ""
    calls: list[dict] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)  # cleared: answers wait for the test
    failed: int = 0
    fail: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def jobs(self) -> list[tuple[str, str]]:
        return [(c["body"]["user"], c["body"]["image"]) for c in self.calls]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    rec.gate.set()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.lock:
                failing = rec.fail > 0
                if failing:
                    rec.fail -= 1
                    rec.failed += 1
                else:
                    rec.calls.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            rec.gate.wait()
            if failing:
                self.send_response(500)
                self.send_header("x-amzn-ErrorType", "InternalFailure")
                payload = b'{"message": "injected failure"}'
            else:
                self.send_response(200)
                payload = b'{"status": "accepted"}'
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = _serve(Handler)
    rec.url = f"http://127.0.0.1:{server.server_port}"
    yield rec
    rec.gate.set()
    server.shutdown()


@dataclass
class FaultProxy:
    """A proxy in front of moto's SageMaker API that injects faults by action name.

    rules: action -> list of faults consumed in order: "throttle" (400 ThrottlingException),
    "500" (InternalFailure), "updating" (DescribeEndpoint answers EndpointStatus Updating;
    an update answers ValidationException as AWS does for an in-progress endpoint).
    refuse_zero: UpdateEndpointWeightsAndCapacities to 0 answers AWS's ValidationException."""

    url: str = ""
    rules: dict[str, list[str]] = field(default_factory=dict)
    refuse_zero: bool = False
    log: list[tuple[str, str, dict]] = field(default_factory=list)  # (action, outcome, request)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def actions(self, action: str, outcome: str | None = None) -> list[dict]:
        return [r for a, o, r in self.log if a == action and (outcome is None or o == outcome)]


@pytest.fixture
def fault_proxy(moto_server) -> Iterator[FaultProxy]:
    proxy = FaultProxy()
    upstream = moto_server.url

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, json.dumps({"__type": code, "message": message}).encode())

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            action = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            request = json.loads(body or b"{}")
            with proxy.lock:
                queue = proxy.rules.get(action, [])
                fault = queue.pop(0) if queue else None
                zero = action == "UpdateEndpointWeightsAndCapacities" and any(
                    d.get("DesiredInstanceCount") == 0 for d in request.get("DesiredWeightsAndCapacities", [])
                )
                outcome = fault or ("refused" if proxy.refuse_zero and zero else "forwarded")
                proxy.log.append((action, outcome, request))
            if fault == "throttle":
                return self._error(400, "ThrottlingException", "Rate exceeded")
            if fault == "500":
                return self._error(500, "InternalFailure", "injected server error")
            if fault == "updating" and action != "DescribeEndpoint":
                return self._error(400, "ValidationException", "Cannot update in-progress endpoint")
            if outcome == "refused":
                return self._error(
                    400, "ValidationException", "DesiredInstanceCount must be greater than 0 for this variant"
                )
            answer = requests.post(upstream + self.path, data=body, headers=dict(self.headers), timeout=30)
            payload = answer.content
            if fault == "updating":
                data = answer.json()
                data["EndpointStatus"] = "Updating"
                payload = json.dumps(data).encode()
            self._send(answer.status_code, payload)

    server = _serve(Handler)
    proxy.url = f"http://127.0.0.1:{server.server_port}"
    yield proxy
    server.shutdown()


@pytest.fixture
def sagemaker(moto_server):
    return boto3.client("sagemaker", endpoint_url=moto_server.url, config=TEST_BOTO_CONFIG)


@pytest.fixture
def make_endpoint(sagemaker) -> Callable[[int], str]:
    """An endpoint on the moto server with one variant 'AllTraffic' at `instances`."""
    return lambda instances=0: create_endpoint(sagemaker, instances)


@pytest.fixture
def runtime_at(monkeypatch, recorder: Recorder) -> Recorder:
    """sagemaker-runtime calls go to the recorder, through boto3's own endpoint variable."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", recorder.url)
    return recorder


@pytest.fixture
def storage(tmp_path):
    return FileStorage(tmp_path / "shared")
