"""Writing a model as a suspect file that ``fpenc verify`` reads: ONNX (recommended: run without any
file or code access) or TorchScript. Used by ``fpenc export``, the benchmarks and the experiments."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch

from fpenc.errors import FpencError


def export_model(net: torch.nn.Module, input_shape, path) -> Path:
    """Write ``net`` (images ``[B, C, H, W]`` in [0, 1] -> ``[B, K]`` scores) as a file ``fpenc verify``
    reads: ONNX for a ``.onnx`` name (needs the ``onnx`` extra), else TorchScript (traced). The batch
    dimension stays dynamic. Returns ``path``."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    x = torch.rand(2, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix.lower() == ".onnx":
            try:  # the TorchScript-based exporter: fast, no extra package (its failure prints the graph: kept quiet)
                _onnx_export(net, x, path, dynamo=False)
            except Exception as legacy:  # an operator it cannot express (e.g. adaptive pooling to a non-factor size)
                try:  # the torch.export-based exporter (needs onnxscript, in the onnx extra)
                    _onnx_export(net, x, path, dynamo=True)
                except Exception as err:
                    raise FpencError(
                        f"ONNX export of {type(net).__name__} failed ({type(legacy).__name__}; then "
                        f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}); install the "
                        "onnx extra (onnxscript), or write TorchScript (.pt)"
                    ) from None
        else:
            torch.jit.save(torch.jit.trace(net, x), str(path))
    return path


def _onnx_export(net: torch.nn.Module, x: torch.Tensor, path: Path, dynamo: bool) -> None:
    """``torch.onnx.export`` with a dynamic batch dimension, quietly (either exporter)."""
    dynamic = (
        {"dynamic_shapes": {"x": {0: torch.export.Dim("b")}}}
        if dynamo
        else {"dynamic_axes": {"x": {0: "b"}, "y": {0: "b"}}}
    )
    with _quiet_stderr():
        torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=dynamo, **dynamic)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptors 1 and 2 (torch's exporters print graphs and progress from C++ and
    Python), then restore them."""
    import os
    import sys
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
