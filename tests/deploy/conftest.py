"""A recording Service Quotas server for the deploy tests (moto has no ListServiceQuotas)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class AwsJsonHandler(BaseHTTPRequestHandler):
    """An AWS JSON-protocol (awsJson1.1) service: answer(target, body) gives each POST's reply."""

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        status, payload = self.answer(self.headers.get("X-Amz-Target", ""), body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def answer(self, target: str, body: dict) -> tuple[int, dict]:
        raise NotImplementedError

    def log_message(self, *args: object) -> None:
        pass


class QuotasHandler(AwsJsonHandler):
    """ListServiceQuotas answered from `server.quotas`; every request recorded."""

    server: QuotasServer

    def answer(self, target: str, body: dict) -> tuple[int, dict]:
        self.server.calls.append((target, body))
        if target.endswith(".ListServiceQuotas") and body.get("ServiceCode") == "sagemaker":
            return 200, {"Quotas": self.server.quotas}
        if target.endswith(".ListAWSDefaultServiceQuotas") and body.get("ServiceCode") == "sagemaker":
            return 200, {"Quotas": self.server.defaults}
        return 400, {"__type": "NoSuchResourceException", "message": f"not recorded: {target}"}


class QuotasServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), QuotasHandler)
        self.calls: list[tuple[str, dict]] = []
        self.quotas: list[dict] = []  # applied values (ListServiceQuotas)
        self.defaults: list[dict] = []  # AWS's defaults (ListAWSDefaultServiceQuotas)

    def set_quota(self, instance_type: str, value: float) -> None:
        self.quotas = [
            {"QuotaName": "ml.t3.medium for endpoint usage", "QuotaCode": "L-0000TEST", "Value": 4.0},
            {"QuotaName": f"{instance_type} for endpoint usage", "QuotaCode": "L-1234ABCD", "Value": value},
        ]


@pytest.fixture
def quotas(monkeypatch: pytest.MonkeyPatch) -> Iterator[QuotasServer]:
    """AWS_ENDPOINT_URL_SERVICE_QUOTAS points boto3's service-quotas client here; ml.g4dn.xlarge: 1."""
    server = QuotasServer()
    server.set_quota("ml.g4dn.xlarge", 1.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", f"http://127.0.0.1:{server.server_port}")
    yield server
    server.shutdown()
    server.server_close()
