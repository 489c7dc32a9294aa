"""A suspect behind an HTTP prediction API (``fpenc verify --suspect http://...``): httpx with
batching, a query budget, client-side rate limiting, timeouts, retries with backoff on 429 / 5xx /
connection errors, and an on-disk answer log so that an interrupted verification resumes without
spending queries again. Protocols: :mod:`fpenc.remote_protocols`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from fpenc.errors import FpencError
from fpenc.remote_protocols import json_request, parse_response, v2_request


class BudgetExhausted(FpencError):
    """The query budget ran out mid-run (the answers so far are in the answer log)."""


def is_url(text) -> bool:
    return isinstance(text, str) and text.startswith(("http://", "https://"))


class AnswerLog:
    """Answers already bought, keyed by the SHA-256 of each float32 image: a JSON-lines file
    appended (and fsynced) after every answered batch, read back on start."""

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        self.answers: dict[str, list[float]] = {}
        if self.path is not None and self.path.is_file():
            text = self.path.read_text()
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                    self.answers[row["key"]] = row["scores"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill: that answer is bought again
            if text and not text.endswith("\n"):  # drop the cut line, so that the next answers start a line
                from fpenc.io import atomic_path

                with atomic_path(self.path) as tmp:
                    tmp.write_text("".join(json.dumps({"key": k, "scores": s}) + "\n" for k, s in self.answers.items()))

    @staticmethod
    def key(image: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()

    def add(self, keys: list[str], scores: np.ndarray) -> None:
        rows = [{"key": k, "scores": s} for k, s in zip(keys, scores.tolist())]
        for row in rows:
            self.answers[row["key"]] = row["scores"]
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))
            fh.flush()
            os.fsync(fh.fileno())


class RemoteModel:
    """``fn(x [B, C, H, W]) -> scores [B, K]`` over HTTP (see the module docstring).

    Args:
        url: the server's base URL, or a full ``.../v2/models/NAME/infer`` or ``.../predict`` URL.
        protocol: "v2", "json" or "auto" (v2 when ``/v2/health/ready`` answers, else json).
        model_name: the v2 model (default: from the URL, else the server's first ready model).
        max_queries: images the server may be asked at most (answers from the log are free).
        rate: requests per second at most (None: no limit).
    """

    def __init__(
        self,
        url: str,
        protocol: str = "auto",
        model_name: str | None = None,
        batch_size: int = 256,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        rate: float | None = None,
        max_queries: int | None = None,
        answer_log: str | Path | None = None,
        num_classes: int | None = None,
    ):
        import httpx

        if protocol not in ("auto", "v2", "json"):
            raise FpencError(f"--protocol must be auto, v2 or json, got {protocol}")
        parts = urlsplit(url)
        if not parts.netloc:
            raise FpencError(f"{url} is not an http(s) URL with a host")
        self.base = f"{parts.scheme}://{parts.netloc}"
        path = parts.path.rstrip("/")
        if "/v2/models/" in path:
            protocol, model_name = "v2", model_name or path.split("/v2/models/", 1)[1].split("/")[0]
        elif path.endswith("/predict"):
            protocol, self.base = "json", f"{self.base}{path[: -len('/predict')]}"
        self.client = httpx.Client(timeout=timeout)
        self.batch_size, self.retries, self.backoff = batch_size, retries, backoff
        self.min_interval = 0.0 if rate is None else 1.0 / rate
        self.max_queries, self.num_classes = max_queries, num_classes
        self.log = AnswerLog(answer_log)
        self.spent, self._last = 0, 0.0
        self.protocol = self._detect() if protocol == "auto" else protocol
        self.model_name = model_name
        if self.protocol == "v2" and self.model_name is None:
            self.model_name = self._first_model()

    # -- HTTP ------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body=None):
        import httpx

        url = f"{self.base}{path}"
        for attempt in range(self.retries + 1):
            wait = self.min_interval - (time.monotonic() - self._last)
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            try:
                response = self.client.request(method, url, json=body)
            except httpx.TimeoutException:
                problem = f"{url} timed out"
            except httpx.ConnectError as err:
                problem = _connect_problem(url, err)
            except httpx.TransportError as err:
                problem = f"{url}: {type(err).__name__}: {_reason(err)}"
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise FpencError(f"{url} answered with something that is not JSON") from None
                problem = f"{url} answered HTTP {response.status_code}: {response.text[:120]!r}"
                if response.status_code not in (429,) and response.status_code < 500:
                    raise FpencError(problem + "; check the URL, the model name and the protocol")
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise FpencError(f"{problem} (after {self.retries + 1} tries); check the server and rerun to resume")

    def _detect(self) -> str:
        import httpx

        try:
            r = self.client.get(f"{self.base}/v2/health/ready")
            return "v2" if r.status_code == 200 else "json"
        except httpx.TransportError as err:
            if _is_tls(err):
                raise FpencError(_connect_problem(self.base, err)) from None
            raise FpencError(f"cannot reach {self.base} ({_reason(err)}); is the server up?") from None

    def _first_model(self) -> str:
        models = self._request("POST", "/v2/repository/index", {})
        ready = [m.get("name") for m in models if isinstance(m, dict) and m.get("state", "READY") == "READY"]
        if not ready:
            raise FpencError(f"{self.base} lists no ready model; give --model-name")
        return ready[0]

    # -- queries ---------------------------------------------------------------------------------
    def _ask(self, x: np.ndarray) -> np.ndarray:
        if self.max_queries is not None and self.spent + len(x) > self.max_queries:
            raise BudgetExhausted(
                f"the query budget of {self.max_queries} is spent ({self.spent} asked); the answers so far are "
                "in the answer log: rerun with a larger --max-queries to resume"
            )
        if self.protocol == "v2":
            body = self._request("POST", f"/v2/models/{self.model_name}/infer", v2_request(x))
        else:
            body = self._request("POST", "/predict", json_request(x))
        self.spent += len(x)
        return parse_response(self.protocol, body, len(x), self.num_classes)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        images = x.detach().cpu().float().numpy()
        keys = [AnswerLog.key(im) for im in images]
        first: dict[str, int] = {}  # each distinct image asked once, at its first place
        for i, k in enumerate(keys):
            if k not in self.log.answers:
                first.setdefault(k, i)
        todo = sorted(first.values())
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            scores = self._ask(images[idx])
            self.log.add([keys[i] for i in idx], scores)
        return torch.tensor([self.log.answers[k] for k in keys], dtype=torch.float32)


def _reason(err: Exception) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__


def _is_tls(err: Exception) -> bool:
    """Whether a transport error is a failed TLS handshake or certificate check."""
    import ssl

    seen, e = set(), err
    while e is not None and id(e) not in seen:
        if isinstance(e, ssl.SSLError) or "SSL" in str(e) or "CERTIFICATE" in str(e).upper():
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _connect_problem(url: str, err: Exception) -> str:
    if _is_tls(err):
        return (
            f"TLS with {url} failed ({_reason(err)}): check that the server speaks https at this address "
            "and that its certificate is trusted (SSL_CERT_FILE), or use its http:// URL"
        )
    return f"cannot reach {url} ({_reason(err)})"


def from_url(url: str, api="probs", outputs="auto", num_classes=None, **kwargs):
    """A :class:`fpenc.suspects.Suspect` over HTTP; ``kwargs`` go to :class:`RemoteModel`."""
    from fpenc.suspects import Suspect

    model = RemoteModel(url, num_classes=num_classes, **kwargs)
    suspect = Suspect(model, api, outputs, num_classes, url)
    suspect.remote = model
    return suspect
