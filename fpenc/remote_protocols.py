"""The two HTTP protocols a remote suspect speaks, as pure encode / decode functions shared by the
client (:mod:`fpenc.remote_client`) and ``fpenc serve`` (:mod:`fpenc.serve`).

``v2`` — the Open Inference Protocol (KServe v2 REST; Triton, KServe, Seldon MLServer):
``POST {base}/v2/models/{name}/infer`` with
``{"inputs": [{"name": "x", "shape": [B, C, H, W], "datatype": "FP32", "data": [...]}]}``, answered by
``{"model_name": name, "outputs": [{"name": "y", "shape": [B, K], "datatype": "FP32", "data": [...]}]}``
(``data`` row-major, flat or nested). Readiness: ``GET {base}/v2/health/ready``; a model's metadata:
``GET {base}/v2/models/{name}``; the models: ``POST {base}/v2/repository/index`` (Triton's extension).

``json`` — a plain protocol: ``POST {base}/predict`` with ``{"inputs": [[[[...]]]]}`` (nested
``[B, C, H, W]`` floats in [0, 1]), answered by ``{"outputs": [[...K scores...], ...]}`` (logits or
probabilities) or, for a label-only service, ``{"labels": [int, ...]}``.
"""

from __future__ import annotations

import math

import numpy as np

from fpenc.errors import FpencError

PROTOCOLS = ("v2", "json")


class RemoteAnswerError(FpencError):
    """A remote suspect's answer that cannot be used (malformed, wrong shape, non-finite, ...)."""


def v2_request(x: np.ndarray) -> dict:
    """The OIP infer request for float32 images ``x [B, C, H, W]``."""
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1).tolist()}]}


def v2_response(scores: np.ndarray, model_name: str) -> dict:
    return {
        "model_name": model_name,
        "outputs": [
            {"name": "y", "shape": list(scores.shape), "datatype": "FP32", "data": scores.reshape(-1).tolist()}
        ],
    }


def json_request(x: np.ndarray) -> dict:
    return {"inputs": x.tolist()}


def json_response(scores: np.ndarray) -> dict:
    return {"outputs": scores.tolist()}


def _array(data, what: str) -> np.ndarray:
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise RemoteAnswerError(f"the server's {what} are not numbers") from None
    return arr


def parse_response(protocol: str, body, batch: int, num_classes: int | None) -> np.ndarray:
    """Scores ``[batch, K]`` from a response body (parsed JSON) of ``protocol``.

    Raises:
        RemoteAnswerError: a body of another layout, another number of rows or classes, labels out of
            range, NaN or inf.
    """
    if not isinstance(body, dict):
        raise RemoteAnswerError(f"the server answered {type(body).__name__}, not a JSON object")
    if protocol == "v2":
        outputs = body.get("outputs")
        if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict) or "data" not in outputs[0]:
            raise RemoteAnswerError(
                "the server's answer has no outputs[0].data (not an Open Inference Protocol answer)"
            )
        out = outputs[0]
        arr = _array(out["data"], "outputs")
        shape = out.get("shape")
        if isinstance(shape, list) and len(shape) == 2 and math.prod(shape) == arr.size:
            arr = arr.reshape(shape)
        elif arr.size % max(batch, 1) == 0:
            arr = arr.reshape(batch, -1)
    elif "labels" in body:
        labels = _array(body["labels"], "labels").reshape(-1)
        if num_classes is None:
            raise RemoteAnswerError("a label-only answer needs the number of classes")
        if len(labels) != batch:
            raise RemoteAnswerError(f"the server answered {len(labels)} labels for {batch} images")
        if (labels != np.round(labels)).any() or labels.min() < 0 or labels.max() >= num_classes:
            raise RemoteAnswerError(f"the server's labels are not classes 0..{num_classes - 1}")
        arr = np.eye(num_classes)[labels.astype(np.int64)]
    elif "outputs" in body:
        arr = _array(body["outputs"], "outputs")
    else:
        raise RemoteAnswerError("the server's answer has neither outputs nor labels (see docs/remote.md)")
    if arr.ndim != 2 or arr.shape[0] != batch:
        raise RemoteAnswerError(
            f"the server answered shape {list(arr.shape)} for {batch} images; expected [{batch}, K]"
        )
    if num_classes is not None and arr.shape[1] != num_classes:
        raise RemoteAnswerError(
            f"the server answered {arr.shape[1]} classes, but the victim has {num_classes}: is it a model of the same task?"
        )
    if not np.isfinite(arr).all():
        raise RemoteAnswerError("the server answered NaN or inf: its answers cannot be fingerprinted")
    return arr.astype(np.float32)


def parse_request(protocol: str, body) -> np.ndarray:
    """Float32 images ``[B, C, H, W]`` from a request body (the server side)."""
    if not isinstance(body, dict):
        raise ValueError("the request is not a JSON object")
    if protocol == "v2":
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], dict):
            raise ValueError("inputs[0] missing")
        x = np.asarray(inputs[0].get("data"), dtype=np.float32)
        shape = inputs[0].get("shape")
        if not isinstance(shape, list) or math.prod(shape) != x.size:
            raise ValueError("inputs[0].shape does not match its data")
        x = x.reshape(shape)
    else:
        x = np.asarray(body.get("inputs"), dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {list(x.shape)}")
    return x
