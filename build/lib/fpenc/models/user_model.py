"""A user's own classifier architecture, named by its class path (``mypkg.nets.MyNet``).

Any ``nn.Module`` whose ``forward`` maps images ``[B, C, H, W]`` in [0, 1] (its normalisation
inside, the contract of every fpenc model) to logits ``[B, K]`` can be the victim — with the
owner's own weights, never retrained — or an architecture of the zoo. Its constructor's keyword
arguments are the architecture's ``options`` (``init_args`` in a victim config).

:class:`UserModel` wraps it so that fpenc's stages see the interface of
:class:`~fpenc.models.classifier.ImageClassifier`: ``features(x)`` is the input of the module's last
``nn.Linear`` (its last-layer representation, ``[B, D]``, used by the key's k-means and by CKA;
the logits when it has no ``nn.Linear``), ``head`` that last ``nn.Linear`` (fine-tuning attacks
of the last layer), ``config`` the plain-JSON dict from which :func:`fpenc.models.build_model`
rebuilds it. Its state dict is the user's module's under ``net.``; a user's plain state dict
(``torch.save(model.state_dict(), path)``) loads into ``.net`` strictly.

The class is imported from the owner's own config (trusted code, like any Python the owner
runs); a suspect's file never names a class.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from typing import Any

import torch
from torch import Tensor, nn

from fpenc.errors import ConfigError

CLASS_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
"""A class path: dotted Python names, the last the class (``mypkg.nets.MyNet``)."""


def is_class_path(name: Any) -> bool:
    """Whether an architecture name is a class path rather than a registered name (it has a dot)."""
    return isinstance(name, str) and "." in name


def import_class(path: str, base: type = nn.Module) -> type:
    """The ``base`` subclass (default ``nn.Module``) at ``path`` (``package.module.Class``).

    Raises:
        ConfigError: not a dotted path, the module cannot be imported, no such class, or not an nn.Module.
    """
    if not CLASS_PATH.fullmatch(path):
        raise ConfigError(f"'{path}' is not a class path; write it as package.module.ClassName")
    import os
    import sys

    module_name, _, cls_name = path.rpartition(".")
    if "" not in sys.path and os.getcwd() not in sys.path:  # as `python -m` does: the working folder's modules
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"cannot import '{module_name}' for the architecture {path} ({err}); install its package or run "
            "fpenc from the folder that holds it (PYTHONPATH)"
        ) from None
    cls = getattr(module, cls_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        kind = "nn.Module" if base is nn.Module else base.__name__
        raise ConfigError(f"{module_name} has no {kind} class '{cls_name}' ({path})")
    return cls


def _last_linear(net: nn.Module) -> nn.Linear | None:
    last = None
    for module in net.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last


class UserModel(nn.Module):
    """A user's classifier ``net`` (images ``[B, C, H, W]`` in [0, 1] -> logits ``[B, K]``) with
    fpenc's model interface (see the module docstring)."""

    def __init__(self, net: nn.Module, config: dict) -> None:
        super().__init__()
        self.net = net
        self.config: dict | None = copy.deepcopy(config)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @property
    def head(self) -> nn.Linear:
        """The module's last ``nn.Linear`` (what last-layer fine-tuning retrains)."""
        last = _last_linear(self.net)
        if last is None:
            raise ConfigError(
                f"{self.config['arch']} has no nn.Linear layer, so it has no last layer to fine-tune; use "
                "attacks that change every weight (finetune:FTAL, prune:P, int8)"
            )
        return last

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    def features(self, x: Tensor) -> Tensor:
        """The input of the last ``nn.Linear``, ``[B, D]`` (the logits when there is none)."""
        last = _last_linear(self.net)
        if last is None:
            return self(x)
        seen: list[Tensor] = []
        handle = last.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
        try:
            self.net(x)
        finally:
            handle.remove()
        return seen[-1].flatten(1)


def user_config(arch: str, num_classes: int, input_shape, options: dict | None = None) -> dict:
    """The plain-JSON config of a class-path architecture (checked: importable, an nn.Module)."""
    import_class(arch)
    if not isinstance(options or {}, dict):
        raise ConfigError(f"the options of {arch} are its constructor's keyword arguments: give a mapping")
    return {
        "arch": arch,
        "num_classes": int(num_classes),
        "input_shape": [int(s) for s in input_shape],
        "mean": None,
        "std": None,
        "init_args": copy.deepcopy(dict(options or {})),
    }


def build_user_model(cfg: dict) -> UserModel:
    """A freshly initialised :class:`UserModel` from :func:`user_config`'s dict, its output width checked.

    Raises:
        ConfigError: the constructor rejects the init args, the forward fails on the config's image
            shape, or it returns another number of classes.
    """
    cls = import_class(cfg["arch"])
    try:
        net = cls(**cfg.get("init_args", {}))
    except TypeError as err:
        raise ConfigError(f"{cfg['arch']}({cfg.get('init_args', {})}) failed: {err}; fix its init_args") from None
    model = UserModel(net, cfg)
    try:
        with torch.no_grad():
            out = model.eval()(torch.rand(2, *cfg["input_shape"]))
    except Exception as err:  # any failure of user code on the task's images: one line, with the shape
        raise ConfigError(
            f"{cfg['arch']} failed on images of shape [2, {', '.join(map(str, cfg['input_shape']))}] in [0, 1]: "
            f"{type(err).__name__}: {err}"
        ) from None
    if out.dim() != 2 or out.shape[1] != cfg["num_classes"]:
        raise ConfigError(
            f"{cfg['arch']} returns shape {tuple(out.shape)} for 2 images; the task has {cfg['num_classes']} classes, "
            "so it must return [B, K] logits with K = the number of classes"
        )
    return model.train()


def load_user_state_dict(model: UserModel, path) -> None:
    """Load a user's plain state dict (``torch.save(model.state_dict(), path)``, or a safetensors
    file) into ``model.net``, strictly; tensors only (``weights_only``: nothing in it can run code).

    Raises:
        ConfigError: unreadable file, not a state dict, or keys/shapes that do not match the class.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"victim weights {path} not found; point zoo.victim.weights at your state_dict file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle of a whole module, a corrupt file, ...
        raise ConfigError(
            f"cannot read {path} as a state dict ({type(err).__name__}): save the weights with "
            "torch.save(model.state_dict(), path) or safetensors, not the whole model"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} holds no state dict (a mapping of names to tensors); save model.state_dict()")
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as err:  # missing / unexpected keys, or shapes: the first lines of torch's message
        detail = ". ".join(" ".join(str(err).split()).split(". ")[:2])  # the first two mismatches
        raise ConfigError(
            f"{path} does not fit {model.config['arch']}({model.config['init_args']}): {detail}; check the class "
            "and its init_args"
        ) from None
