"""Real INT8 execution: every conv and linear layer of a model replaced by torch's quantized module
(INT8 weights, per output channel; INT8 activations, per tensor, calibrated), run by torch's
quantized kernels (x86 / fbgemm, qnnpack on ARM). Between the layers activations are dequantized,
so any architecture of the registry converts without fusing (eager-mode post-training static
quantization, ``torch.ao.quantization``).

A converted model is stored like any other (plain tensors + architecture config): its config
carries ``"quantized": "int8"``; :func:`plain_state_dict` spells its quantized layers as plain
tensors (INT8 values, per-channel scales and zero points, output scale and zero point), and
:func:`rebuild_int8` + :func:`load_plain_state_dict` rebuild the same model from them (every
entry used, none missing: a strict load).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

QUANTIZED = "quantized"
"""The architecture-config key of a converted model (value ``"int8"``)."""


def _wrap(model: nn.Module) -> None:
    """Each conv and linear layer in place -> ``Sequential(QuantStub, layer, DeQuantStub)`` with a qconfig."""
    import torch.ao.quantization as tq

    engine = torch.backends.quantized.engine
    for name, child in model.named_children():
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            wrapped = nn.Sequential(tq.QuantStub(), child, tq.DeQuantStub())
            wrapped.qconfig = tq.get_default_qconfig(engine)
            setattr(model, name, wrapped)
        else:
            _wrap(child)


def _convert(model: nn.Module, calibration: torch.Tensor | None) -> nn.Module:
    import torch.ao.quantization as tq

    with warnings.catch_warnings():  # torch.ao.quantization's deprecation and observer notices
        warnings.simplefilter("ignore")
        _wrap(model)
        tq.prepare(model, inplace=True)
        if calibration is not None:
            with torch.no_grad():
                for i in range(0, len(calibration), 256):
                    model(calibration[i : i + 256])
        tq.convert(model, inplace=True)
    return model.eval()


def quantize_int8(net: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """A real INT8 copy of ``net`` (left untouched), activation ranges calibrated on float images
    ``calibration [B, C, H, W]`` in [0, 1]."""
    out = _convert(copy.deepcopy(net).cpu().eval(), calibration)
    if hasattr(out, "config"):
        out.config = {**out.config, QUANTIZED: "int8"}
    return out


def rebuild_int8(float_net: nn.Module, config: dict) -> nn.Module:
    """The structure of :func:`quantize_int8` around a freshly built ``float_net``, ready for the
    converted model's state dict; ``config`` (with its ``quantized`` key) becomes its config."""
    out = _convert(float_net.eval(), None)
    out.config = dict(config)
    return out


def _quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The converted conv and linear layers of ``model``, by name."""
    from torch.ao.nn import quantized as nnq

    return {n: m for n, m in model.named_modules() if isinstance(m, (nnq.Conv2d, nnq.Linear))}


def _float_entries(model: nn.Module, layers: dict) -> dict[str, torch.Tensor]:
    """The plain-tensor entries of ``model``'s state dict outside its converted layers (float
    parameters, buffers, the input quantizers' scales and zero points)."""
    return {
        k: v
        for k, v in model.state_dict().items()
        if isinstance(v, torch.Tensor) and not v.is_quantized and not any(k.startswith(f"{n}.") for n in layers)
    }


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A converted model's state as plain tensors: its other entries as they are, and per converted
    layer ``<name>.int_weight`` (int8), ``.weight_scales`` / ``.weight_zero_points`` (per output
    channel), ``.bias``, and ``.scale`` / ``.zero_point`` of its output."""
    layers = _quantized_layers(model)
    out = dict(_float_entries(model, layers))
    for name, m in layers.items():
        w = m.weight()
        out[f"{name}.int_weight"] = w.int_repr()
        out[f"{name}.weight_scales"] = w.q_per_channel_scales()
        out[f"{name}.weight_zero_points"] = w.q_per_channel_zero_points()
        out[f"{name}.scale"] = torch.tensor(float(m.scale), dtype=torch.float64)
        out[f"{name}.zero_point"] = torch.tensor(int(m.zero_point), dtype=torch.int64)
        if m.bias() is not None:
            out[f"{name}.bias"] = m.bias().detach()
    return out


def load_plain_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load :func:`plain_state_dict` into a model of :func:`rebuild_int8`'s structure, strictly.

    Raises:
        RuntimeError: missing or unexpected entries.
    """
    layers = _quantized_layers(model)
    left = dict(state)
    try:
        for name, m in layers.items():
            w = torch._make_per_channel_quantized_tensor(
                left.pop(f"{name}.int_weight"),
                left.pop(f"{name}.weight_scales"),
                left.pop(f"{name}.weight_zero_points"),
                0,
            )
            bias = left.pop(f"{name}.bias") if m.bias() is not None else None  # the structure says if it has one
            m.set_weight_bias(w, bias)
            m.scale, m.zero_point = float(left.pop(f"{name}.scale")), int(left.pop(f"{name}.zero_point"))
    except KeyError as err:
        raise RuntimeError(f"INT8 state dict: missing {err.args[0]}") from None
    current = _float_entries(model, layers)
    if set(current) != set(left):
        raise RuntimeError(
            f"INT8 state dict: missing {sorted(set(current) - set(left))}, unexpected {sorted(set(left) - set(current))}"
        )
    with torch.no_grad():
        for k, v in current.items():
            v.copy_(left[k])
