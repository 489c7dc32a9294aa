"""Encoder transfer (Peng et al., CVPR 2022, App. E): the fingerprint encoder of one victim's
bundle protects another victim with no zoo of its own to train on.

``fpenc test -c <V2's config> --model.init_from <V1's bundle>`` runs V2's pipeline (its UAPs, key
and fingerprints) and judges V2's models with V1's encoder; ``fpenc fit ... --model.init_from``
fine-tunes it on V2's zoo instead of starting from random weights. The bundle is read as data
(safetensors), never unpickled; its encoder is loaded with ``strict=True`` and must have the
network options of this run.
"""

from __future__ import annotations

from fpenc.errors import ConfigError


def encoder_from_bundle(path, wanted: dict):
    """The :class:`~fpenc.encoder.network.FingerprintEncoder` of the bundle at ``path`` (train mode,
    weights loaded strictly), checked against ``wanted`` (this run's ``input_dim``, ``hidden_dim``,
    ``embed_dim``, ``proj_dim``, ``input_transform``).

    Raises:
        ConfigError: the bundle is missing or damaged, or its encoder has other options.
    """
    from pathlib import Path

    from fpenc.bundle import BundleError, load_bundle

    if not Path(path).is_file():
        raise ConfigError(f"model.init_from: {path} does not exist; name an exported bundle (*.fpenc.safetensors)")
    try:
        enc = load_bundle(path).encoder()
    except BundleError as err:
        raise ConfigError(f"model.init_from: {err}") from err
    have = enc.config()
    differ = [f"{k} {have[k]} (this run: {v})" for k, v in wanted.items() if have.get(k) != v]
    if differ:
        hint = (
            "its key has another number of datapoints or classes; transfer needs the same key.num_datapoints"
            if "input_dim" in wanted and have.get("input_dim") != wanted["input_dim"]
            else "set these model options to the bundle's"
        )
        raise ConfigError(f"model.init_from: {path}'s encoder has {', '.join(differ)}; {hint}")
    return enc.train()
