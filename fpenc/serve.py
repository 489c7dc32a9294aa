"""``fpenc serve MODEL_FILE``: a suspect file behind both protocols of :mod:`fpenc.remote_protocols`
(FastAPI + uvicorn), for trying verification end to end and for the tests.

The file is loaded as ``fpenc verify`` loads a suspect (ONNX; TorchScript in the sandbox; .pt2 only
when trusted), so serving an untrusted file is as safe as verifying it. (No postponed annotations
here: FastAPI reads the handlers' ``Request`` annotations at run time.) Optional defences of a
server that does not want to be fingerprinted: ``--answer label|topk:K`` (what it reveals) and
``--round D`` (probabilities rounded to D decimals).
"""

from pathlib import Path

import numpy as np


def make_app(fn, model_name: str = "suspect", answer: str = "probs", round_to: int | None = None, defences=None):
    """The FastAPI app serving ``fn`` (float images ``[B, C, H, W]`` in [0, 1] -> ``[B, K]`` scores);
    ``defences``: a :class:`fpenc.serve_defences.Defences` (input transforms, noisy answers)."""
    import torch
    from fastapi import FastAPI, HTTPException, Request

    from fpenc.api import apply_api, parse_api
    from fpenc.remote_protocols import json_response, parse_request, v2_response
    from fpenc.suspects import Suspect

    api = parse_api(answer)
    app = FastAPI(title=f"fpenc serve: {model_name}")

    from fpenc.serve_defences import Defences

    guard = defences or Defences()

    model = Suspect(fn, "probs", name=model_name)  # logits or probabilities -> probabilities, checked

    detector = guard.make_detector()

    def predict(x: np.ndarray) -> np.ndarray:
        queries = torch.from_numpy(x)
        probs = model(guard.inputs(queries))
        if detector is not None:  # flagged near-duplicates get random answers
            flagged = detector.flag(queries)
            probs = probs.clone()  # the model's answers may be inference tensors
            probs[flagged] = detector.random_answers(int(flagged.sum()), probs.shape[1]).to(probs.dtype)
        probs = apply_api(guard.answers(probs), api).numpy()
        return np.round(probs, round_to) if round_to is not None else probs

    async def images(request: Request, protocol: str) -> np.ndarray:
        try:
            return parse_request(protocol, await request.json())
        except ValueError as err:
            raise HTTPException(status_code=400, detail=str(err)) from None

    @app.get("/v2/health/ready")
    def ready():
        return {"ready": True}

    @app.get("/v2/models/{name}")
    def metadata(name: str):
        if name != model_name:
            raise HTTPException(status_code=404, detail=f"no model {name}")
        return {"name": model_name, "platform": "fpenc", "inputs": [{"name": "x", "datatype": "FP32"}]}

    @app.post("/v2/repository/index")
    def index():
        return [{"name": model_name, "state": "READY"}]

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        if name != model_name:
            raise HTTPException(status_code=404, detail=f"no model {name}")
        return v2_response(predict(await images(request, "v2")), model_name)

    @app.post("/predict")
    async def plain(request: Request):
        scores = predict(await images(request, "json"))
        if api.mode == "label":
            return {"labels": scores.argmax(1).tolist()}
        return json_response(scores)

    return app


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, trusted: bool = False, **kwargs) -> None:
    """Serve the suspect file ``path`` until interrupted."""
    import uvicorn

    from fpenc.suspects import load_model_file

    app = make_app(load_model_file(path, trusted), model_name=Path(path).stem, **kwargs)
    uvicorn.run(app, host=host, port=port, log_level="warning")


class BackgroundServer:
    """A uvicorn server of ``app`` in a daemon thread on ``host`` and a free port (or ``port``):
    ``.url`` once started; :meth:`stop` ends it. For scripts and tests."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, log_level: str = "critical"):
        import socket
        import threading
        import time

        import uvicorn

        if port is None:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError(f"the server on {host}:{port} did not start")
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
