"""Body-size caps and per-client upload quotas (`deepfake_audio.studio.limits`), in front of a small app."""
from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from deepfake_audio.studio.limits import RequestLimits, UploadQuota


async def echo(request: Request):
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited():
    app = Starlette(routes=[Route("/gradio_api/upload", echo, methods=["POST"]), Route("/v1/x", echo, methods=["POST"])])
    clock = Clock()
    quota = UploadQuota(in_flight=3000, per_window=5000, window=3600, clock=clock)
    client = TestClient(RequestLimits(app, quota=quota, max_body=1000, max_upload_body=4000))
    return client, clock


def test_bodies_over_the_cap_get_413_in_openai_shape(limited):
    client, _ = limited
    assert client.post("/v1/x", content=b"x" * 1000).json() == {"bytes": 1000}
    for content in (b"x" * 1001, iter([b"x" * 600, b"x" * 600])):  # declared length, then chunked
        answer = client.post("/v1/x", content=content)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "request_too_large" and "at most" in answer.json()["error"]["message"]
    assert client.post("/gradio_api/upload", content=b"x" * 4001).status_code == 413


def test_each_client_has_an_upload_quota_per_window(limited):
    client, clock = limited
    for _ in range(2):
        assert client.post("/gradio_api/upload", content=b"x" * 2000).status_code == 200
    refused = client.post("/gradio_api/upload", content=b"x" * 2000)  # 6,000 > 5,000 within the hour
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert "quota" in refused.json()["error"]["message"]
    assert client.post("/v1/x", content=b"x" * 10).status_code == 200  # other requests are not counted
    clock.now += 3601  # the window has passed: the old uploads no longer count
    assert client.post("/gradio_api/upload", content=b"x" * 2000).status_code == 200


def test_uploads_in_flight_are_capped():
    quota = UploadQuota(in_flight=3000, per_window=10**9)
    quota.start("a", 2500)
    assert quota.refusal("a", 1000) is not None  # 3,500 arriving at once
    assert quota.refusal("b", 1000) is None  # another client is not held up
    quota.finish("a", 2500, stored=False)
    assert quota.refusal("a", 1000) is None
