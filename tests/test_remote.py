"""Remote suspects: `fpenc serve` (a real uvicorn server on 127.0.0.1) and `fpenc verify --suspect
http://...` over the Open Inference Protocol (v2) and the plain JSON protocol — the same verdict as
the file; the query budget and the answer log (an interrupted run resumes without buying answers
again); bad servers as one-line errors."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from test_bundle_verify import C, H, W, toy  # noqa: E402, F401 (toy: the bundle fixture, shared)

from fpenc.cli import main  # noqa: E402
from fpenc.serve import BackgroundServer as Server  # noqa: E402
from fpenc.serve import make_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def remote(tmp_path_factory, request):
    """The toy bundle of test_bundle_verify, and its victim exported to ONNX and served on 127.0.0.1."""
    from fpenc.suspect_export import export_model
    from fpenc.suspects import load_model_file

    shared = request.getfixturevalue("toy")
    tmp = tmp_path_factory.mktemp("remote")
    files = {"copy": export_model(shared["victim"], (C, H, W), tmp / "copy.onnx")}
    servers = {name: Server(make_app(load_model_file(path), model_name=name)) for name, path in files.items()}
    yield {"tmp": tmp, "bundle": str(shared["path"]), "files": files, "servers": servers}
    for s in servers.values():
        s.stop()


def verify_json(capsys, *args) -> tuple[int, dict]:
    rc = main(["verify", *args, "--format", "json"])
    out = capsys.readouterr()
    assert out.out, out.err
    return rc, json.loads(out.out)


def test_remote_verdict_equals_the_file_over_both_protocols(remote, capsys):
    b, s = remote["bundle"], remote["servers"]["copy"]
    rc_file, by_file = verify_json(capsys, "--bundle", b, str(remote["files"]["copy"]))
    want = by_file["results"][0]
    for url, protocol in ((s.url, "v2"), (f"{s.url}/predict", "json"), (f"{s.url}/v2/models/copy/infer", "v2")):
        log = remote["tmp"] / f"log-{protocol}-{len(url)}.jsonl"
        rc, doc = verify_json(capsys, "--bundle", b, url, "--answer-log", str(log))
        got = doc["results"][0]
        assert rc == rc_file == 10 and got["verdict"] == want["verdict"] == "derived"
        assert got["p_value"] == want["p_value"] and got["agreement"] == want["agreement"]
        assert got["remote"]["protocol"] == protocol and got["remote"]["queries_spent"] == want["queries"]


def test_budget_refused_up_front_and_an_interrupted_run_resumes_from_the_answer_log(remote, capsys):
    from fpenc.bundle import load_bundle
    from fpenc.verification import queries_needed

    b, url = remote["bundle"], remote["servers"]["copy"].url
    need = queries_needed(load_bundle(b))
    log = remote["tmp"] / "resume.jsonl"
    assert main(["verify", "--bundle", b, url, "--answer-log", str(log), "--max-queries", str(need - 1)]) == 2
    assert f"a verdict needs {need} queries but --max-queries is {need - 1}" in capsys.readouterr().err
    log.write_text("")  # a run that had started: the budget is checked as it goes
    half = need // 2
    assert main(["verify", "--bundle", b, url, "--answer-log", str(log), "--max-queries", str(half)]) == 2
    assert "query budget of" in capsys.readouterr().err
    bought = len(log.read_text().splitlines())
    assert 0 < bought <= half
    rc, doc = verify_json(capsys, "--bundle", b, url, "--answer-log", str(log), "--max-queries", str(need - bought))
    r = doc["results"][0]
    assert rc == 10 and r["remote"]["queries_spent"] == need - bought and r["remote"]["answers_from_log"] == bought


@pytest.mark.parametrize(
    "kind, message",
    [
        ("classes", "answered 5 classes, but the victim has 10"),
        ("nan", "NaN or inf"),
        ("rows", "answered shape"),
        ("labels", "labels are not classes 0..9"),
        ("crash", "answered HTTP 500"),
        ("notjson", "answered with something that is not JSON"),
        ("layout", "has neither outputs nor labels"),
        ("negative", "negative 'probabilities'"),
        ("sum", "do not sum to 1"),
        ("missing", "answered HTTP 404"),
        ("slow", "timed out"),
    ],
)
def test_bad_remote_answers_are_one_line_errors(remote, capsys, kind, message):
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict):
        b = len(body["inputs"])
        if kind == "classes":
            return {"outputs": [[0.2] * 5] * b}
        if kind == "nan":  # (JSON has no NaN; Python's json, like many servers, writes it anyway)
            return Response(json.dumps({"outputs": [[float("nan")] * 10] * b}), media_type="application/json")
        if kind == "rows":
            return {"outputs": [[0.1] * 10] * max(b - 1, 0)}
        if kind == "labels":
            return {"labels": [12] * b}
        if kind == "notjson":
            return Response("<html>busy</html>", media_type="text/html")
        if kind == "layout":
            return {"predictions": [[0.1] * 10] * b}
        if kind == "negative":
            return {"outputs": [[-0.1] + [1.1 / 9] * 9] * b}
        if kind == "sum":
            return {"outputs": [[0.5] * 10] * b}
        if kind == "missing":
            return Response("no such model", status_code=404)
        if kind == "slow":
            time.sleep(2)
            return {"outputs": [[0.1] * 10] * b}
        raise RuntimeError("broken model")

    server = Server(app)
    try:
        url = f"{server.url}/predict"
        extra = {"negative": ["--outputs", "probs"], "sum": ["--outputs", "probs"], "slow": ["--timeout", "0.3"]}
        log = ["--answer-log", str(remote["tmp"] / f"{kind}.jsonl")]
        assert main(["verify", "--bundle", remote["bundle"], url, *log, *extra.get(kind, [])]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("fpenc verify: error:") and message in err, err
    finally:
        server.stop()


def test_unreachable_server(remote, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["verify", "--bundle", remote["bundle"], url]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_a_killed_verifier_resumes_from_the_answer_log(remote, tmp_path):
    """SIGKILL mid-run (the verifier in its own process, asking 8 images a request at 10 requests a
    second): the rerun asks the server only what the log lacks."""
    import os
    import signal
    import subprocess
    import sys

    from fpenc.bundle import load_bundle
    from fpenc.verification import queries_needed

    url, log = remote["servers"]["copy"].url, tmp_path / "killed.jsonl"
    args = ["verify", "--bundle", remote["bundle"], url, "--answer-log", str(log), "--batch-size", "8"]
    code = "import sys, fpenc.cli; sys.exit(fpenc.cli.main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *args, "--rate", "10"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(300):
            if log.is_file() and len(log.read_text().splitlines()) >= 24:
                break
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    bought = len([line for line in log.read_text().splitlines() if line.endswith("}")])
    need = queries_needed(load_bundle(remote["bundle"]))
    assert 24 <= bought < need
    done = subprocess.run([sys.executable, "-c", code, *args, "--format", "json"], capture_output=True, text=True)
    r = json.loads(done.stdout)["results"][0]
    assert done.returncode == 10 and r["remote"]["queries_spent"] == need - bought


def test_a_server_with_the_detector_answers_repeated_queries_at_random(remote):
    import httpx

    from fpenc.serve_defences import Defences
    from fpenc.suspects import load_model_file

    server = Server(make_app(load_model_file(remote["files"]["copy"]), model_name="d", defences=Defences(detector=25)))
    try:
        x = torch.rand(4, C, H, W, generator=torch.Generator().manual_seed(0)).numpy()
        body = {"inputs": x.tolist()}
        first = np.asarray(httpx.post(f"{server.url}/predict", json=body, timeout=30).json()["outputs"])
        again = np.asarray(httpx.post(f"{server.url}/predict", json=body, timeout=30).json()["outputs"])
    finally:
        server.stop()
    fn = load_model_file(remote["files"]["copy"])
    with torch.no_grad():
        want = torch.softmax(torch.as_tensor(fn(torch.from_numpy(x))), 1).numpy()
    assert np.allclose(first, want, atol=1e-5)  # new queries: the model's answers
    assert not np.allclose(again, want, atol=1e-2) and np.allclose(again.sum(1), 1, atol=1e-5)  # repeats: random


def test_a_tls_failure_is_one_line_that_names_tls(remote, capsys):
    url = remote["servers"]["copy"].url.replace("http://", "https://")  # a plain-HTTP server
    assert main(["verify", "--bundle", remote["bundle"], url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TLS" in err[0] and "http://" in err[0], err


def test_a_repeated_image_is_asked_once_and_the_budget_counts_distinct_images(remote):
    from fpenc.remote_client import RemoteModel

    model = RemoteModel(remote["servers"]["copy"].url, num_classes=10, batch_size=2)
    x = torch.rand(3, C, H, W, generator=torch.Generator().manual_seed(1))
    out = model(torch.cat([x, x[:2], x[1:2]]))
    assert model.spent == 3  # 6 images, 3 distinct
    assert torch.equal(out[3], out[0]) and torch.equal(out[4], out[1]) and torch.equal(out[5], out[1])
    assert torch.equal(model(x), out[:3]) and model.spent == 3  # asked again: answered from the log
