"""The endpoint as a client meets it: a real `sg2 serve` process on 127.0.0.1."""
from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import socket

import httpx
import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from sg2_container.cli.main import cli
from tests.serving.server import Server, tiny_model

MAX_IMAGES = 16


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the functional tests: batches gather for 150 ms so concurrent requests
    reliably share a forward."""
    tmp = tmp_path_factory.mktemp("serve")
    network = tmp / "model.pt"
    tiny_model(network)
    server = Server.sg2_serve(network, tmp, "--max-batch", "8", "--batch-wait-ms", "150",
                              "--max-images", str(MAX_IMAGES))
    codes = server.ping_codes_until_ready()
    yield server, network, codes
    assert server.stop() == 0, server.log()


def post(server, body, accept=None, headers=None):
    headers = dict(headers or {}, **({"Accept": accept} if accept else {}))
    content = json.dumps(body) if isinstance(body, (dict, list)) else body
    return httpx.post(server.url + "/invocations", content=content, headers=headers, timeout=60)


def png_array(data: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def test_ping_is_503_while_the_model_loads_then_200(served):
    server, _, codes = served
    assert codes[0] == 503 and codes[-1] == 200, codes
    answer = httpx.get(server.url + "/ping").json()
    assert answer["status"] == "ready"


def test_png_for_a_seed_equals_sg2_generate(served, tmp_path):
    server, network, _ = served
    answer = post(server, {"seed": 7, "truncation_psi": 0.7}, accept="image/png")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    result = CliRunner().invoke(cli, ["generate", "--network", str(network), "--seeds", "7",
                                      "--trunc", "0.7", "--outdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with PIL.Image.open(tmp_path / "seed0007.png") as image:
        expected = np.asarray(image)
    served_image = png_array(answer.content)
    assert served_image.shape == expected.shape == (16, 16, 3)
    assert np.abs(served_image.astype(int) - expected.astype(int)).max() <= 1


def test_json_npy_and_default_accept_agree(served):
    server, _, _ = served
    body = {"seeds": [3, 1, 2]}
    as_json = post(server, body, accept="application/json").json()
    assert [item["seed"] for item in as_json["images"]] == [3, 1, 2]
    assert (as_json["width"], as_json["height"], as_json["channels"]) == (16, 16, 3)
    pngs = np.stack([png_array(base64.b64decode(item["png"])) for item in as_json["images"]])
    answer = post(server, body, accept="application/x-npy")
    assert answer.headers["content-type"] == "application/x-npy"
    arrays = np.load(io.BytesIO(answer.content), allow_pickle=False)
    assert arrays.dtype == np.uint8 and arrays.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(arrays, pngs)
    for accept in (None, "*/*", "text/html;q=0.9, */*;q=0.1"):
        assert post(server, body, accept=accept).json() == as_json
    # Unknown extra headers are ignored.
    assert post(server, body, headers={"X-Amzn-Trace-Id": "abc", "X-Whatever": "1"}).status_code == 200


@pytest.mark.parametrize("accept,body,expected", [
    # A PNG holds one image: the next acceptable type answers instead of a 406.
    ("image/png, application/json;q=0.9", {"seeds": [1, 2]}, "application/json"),
    ("image/*, application/json;q=0.5", {"seeds": [1, 2]}, "application/json"),
    ("image/png, */*;q=0.1", {"seeds": [1, 2]}, "application/json"),
    ("image/png, application/json;q=0.9", {"seed": 1}, "image/png"),
    # q=0 excludes a type even where a wildcard would allow it.
    ("application/json;q=0, */*", {"seed": 1}, "image/png"),
    ("application/json;q=0, */*", {"seeds": [1, 2]}, "application/x-npy"),
    # The most specific range wins over a wildcard of the same q.
    ("*/*, image/png", {"seed": 1}, "image/png"),
    ("application/*, application/x-npy", {"seeds": [1, 2]}, "application/x-npy"),
    ("image/*", {"seed": 1}, "image/png"),
    ("*; q=.2", {"seed": 1}, "application/json"),  # Java's HttpURLConnection
])
def test_accept_negotiation(served, accept, body, expected):
    server, _, _ = served
    answer = post(server, body, accept=accept)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == expected


def test_a_request_alone_and_inside_a_batch_gives_the_same_bytes(served):
    server, _, _ = served
    request = {"seeds": [11, 12]}
    alone = post(server, request, accept="application/x-npy").content
    others = [{"seeds": [s]} for s in range(20, 26)] + [{"mix": {"row_seeds": [1], "col_seeds": [2]}}]
    before = httpx.get(server.url + "/ping").json()["batches"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post, server, body, "application/x-npy") for body in
                   others[:4] + [request] + others[4:]]
        answers = [f.result() for f in futures]
    batches = httpx.get(server.url + "/ping").json()["batches"] - before
    assert all(a.status_code == 200 for a in answers)
    assert batches < len(answers), "the concurrent requests were not batched"
    assert answers[4].content == alone


def test_style_mix_and_projected_w(served):
    server, _, _ = served
    mix = post(server, {"mix": {"row_seeds": [1, 2], "col_seeds": "3-4", "styles": "0-2"}}).json()
    assert [(i["row_seed"], i["col_seed"]) for i in mix["images"]] == [(1, 3), (1, 4), (2, 3), (2, 4)]
    w = np.random.RandomState(0).randn(6, 16).tolist()  # the tiny net has 6 ws of 16
    one = post(server, {"w": w}, accept="application/x-npy")
    also = post(server, {"w": [w]}, accept="application/x-npy")
    assert one.status_code == 200, one.text
    assert one.content == also.content


@pytest.mark.parametrize("body,accept,status,field", [
    (b"not json", None, 400, None),
    ([1, 2], None, 400, None),
    ({"seed": "7"}, None, 400, "seed"),
    ({"seed": -1}, None, 400, "seed"),
    ({"seed": True}, None, 400, "seed"),
    ({"seeds": [1, -2]}, None, 400, "seeds"),
    ({"seeds": list(range(MAX_IMAGES + 1))}, None, 400, "seeds"),
    ({"seeds": "0-4294967295"}, None, 400, "seeds"),
    ({"seeds": f"0,1-{MAX_IMAGES}"}, None, 400, "seeds"),
    ({"seeds": []}, None, 400, "seeds"),
    ({"seed": 1, "seeds": [2]}, None, 400, "seeds"),
    ({}, None, 400, None),
    ({"seed": 1, "truncation_psi": "high"}, None, 400, "truncation_psi"),
    ({"seed": 1, "truncation_psi": 1e9}, None, 400, "truncation_psi"),
    ({"seed": 1, "noise_mode": "loud"}, None, 400, "noise_mode"),
    ({"seed": 1, "class": 2}, None, 400, "class"),
    ({"seed": 1, "sede": 2}, None, 400, "sede"),
    ({"w": [[1.0] * 16] * 5}, None, 400, "w"),
    ({"w": [["a"] * 16] * 6}, None, 400, "w"),
    ({"w": [[1.0] * 16] * 6, "truncation_psi": 0.5}, None, 400, "truncation_psi"),
    ({"mix": {"row_seeds": [1], "col_seeds": [2], "styles": [99]}}, None, 400, "mix.styles"),
    ({"mix": {"row_seeds": list(range(5)), "col_seeds": list(range(5))}}, None, 400,
     "mix"),
    ({"seeds": [1, 2]}, "image/png", 406, None),
    ({"seeds": [1, 2]}, "image/*", 406, None),  # nothing acceptable holds two images
    ({"seed": 1}, "text/html", 406, None),
    ({"seed": 1}, "image/png;q=0, application/*;q=0", 406, None),
])
def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(served, body, accept, status,
                                                                   field):
    server, _, _ = served
    answer = post(server, body, accept=accept)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["field"] == field and error["error"]
    if field:
        assert field in error["error"]
    assert post(server, {"seed": 1}).status_code == 200


def test_null_means_the_field_is_absent(served):
    """Clients serialise unset options as null: every optional field then takes its default."""
    server, _, _ = served
    plain = post(server, {"seed": 1}, accept="application/x-npy")
    nulls = post(server, {"seed": 1, "seeds": None, "truncation_psi": None, "noise_mode": None,
                          "class": None, "w": None, "mix": None}, accept="application/x-npy")
    assert nulls.status_code == 200, nulls.text
    assert nulls.content == plain.content
    mix = {"row_seeds": [1], "col_seeds": [2]}
    assert post(server, {"mix": dict(mix, styles=None), "truncation_psi": None},
                accept="application/x-npy").content == \
        post(server, {"mix": mix}, accept="application/x-npy").content
    unknown = post(server, {"seed": 1, "sede": None})  # a misspelling is refused, null or not
    assert unknown.status_code == 400 and unknown.json()["field"] == "sede"


@pytest.mark.parametrize("content_type,body,status", [
    # A JSON body is taken whatever the header says (curl -d sends a form type).
    ("application/x-www-form-urlencoded", {"seed": 1}, 200),
    ("text/plain", {"seed": 1}, 200),
    ("application/octet-stream", {"seed": 1}, 200),
    # A body that is not JSON: 415 when the header says why, 400 when it claims JSON or is absent.
    ("application/x-www-form-urlencoded", b"seed=1", 415),
    ("image/png", b"\x89PNG\r\n", 415),
    ("application/json; charset=utf-8", b"seed=1", 400),
    ("application/vnd.api+json", b"seed=1", 400),
    (None, b"seed=1", 400),
])
def test_content_type_is_not_required_but_explains_a_body_that_is_not_json(
        served, content_type, body, status):
    server, _, _ = served
    headers = {"Content-Type": content_type} if content_type else {}
    answer = post(server, body, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 415:
        error = answer.json()["error"]
        assert content_type in error and "application/json" in error, error
    elif status == 400:
        assert "not JSON" in answer.json()["error"]


def _read_response(sock) -> str:
    """Headers and body of one HTTP response (they may arrive in separate segments)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return (head + b"\r\n\r\n" + body).decode()


def test_a_body_over_6_mib_is_refused_before_it_is_read(served):
    server, _, _ = served
    size = 7 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n" % size + b" " * 65536)
        reply = _read_response(sock)  # answered after 64 KiB of the 7 MiB
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "6 MiB" in reply
    # Without a Content-Length (chunked), counted while streaming.
    chunks = (b" " * (1024 * 1024) for _ in range(7))
    try:
        answer = post(server, chunks)
        assert answer.status_code == 413
    except httpx.WriteError:
        pass  # the server answered and closed while the client was still sending
    assert post(server, {"seed": 1}).status_code == 200


def test_unknown_routes_and_methods(served):
    server, _, _ = served
    assert httpx.get(server.url + "/invocations").status_code == 405
    assert httpx.get(server.url + "/nothing").status_code == 404


def test_ping_stays_fast_while_large_bodies_arrive(served):
    """Eight 6 MB bodies of 3,000,000 seeds once held the event loop for seconds (SageMaker
    allows /ping 2 s)."""
    import threading
    import time

    server, _, _ = served
    body = b'{"seeds": [' + b",".join([b"1"] * 3_000_000) + b"]}"
    answers, latencies = [], []

    def big():
        answers.append(httpx.post(server.url + "/invocations", content=body, timeout=60))

    threads = [threading.Thread(target=big) for _ in range(8)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        started = time.perf_counter()
        assert httpx.get(server.url + "/ping", timeout=30).status_code == 200
        latencies.append(time.perf_counter() - started)
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [400] * 8
    assert max(latencies) < 1.0, latencies


def test_model_tar_gz_and_a_four_channel_model(tmp_path):
    """`sg2 serve` takes what the batch job takes (a training job's model.tar.gz), and a
    4-channel model answers RGBA PNGs instead of a plain-text 500."""
    import tarfile

    import torch

    from sg2_container.models.files import save_model
    from sg2_container.models.networks import Generator
    from tests.serving.server import TINY_G

    torch.manual_seed(0)
    save_model(tmp_path / "model.pt", G_ema=Generator(c_dim=0, img_channels=4, **TINY_G).eval())
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "model.pt", arcname="model.pt")
    server = Server.sg2_serve(tmp_path / "model.tar.gz", tmp_path)
    try:
        server.ping_codes_until_ready()
        answer = post(server, {"seed": 3}, accept="image/png")
        assert answer.status_code == 200, answer.text
        with PIL.Image.open(io.BytesIO(answer.content)) as image:
            assert image.mode == "RGBA" and image.size == (16, 16)
        answer = post(server, {"seeds": [1, 2]})
        assert answer.status_code == 200 and answer.json()["channels"] == 4
    finally:
        assert server.stop() == 0, server.log()
