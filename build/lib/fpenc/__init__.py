"""fpenc: prove ownership of neural networks by UAP fingerprinting (Peng et al., CVPR 2022).

The Python API, as short as the command line::

    import fpenc

    bundle = fpenc.protect(my_model, init_args={"width": 24})      # fpenc protect: zoo ... bundle
    bundle = fpenc.load_bundle("checkpoints/mine.fpenc.safetensors")
    verdict = fpenc.verify(bundle, fpenc.Suspect.from_callable(query_api, api="label"))
    print(verdict.outcome, verdict.p_value)

Names are imported on first use, so ``import fpenc`` (and ``fpenc --help``) stays light.
"""

__version__ = "0.1.0"

_API = {
    "protect": ("fpenc.protection", "protect"),
    "load_bundle": ("fpenc.bundle", "load_bundle"),
    "Bundle": ("fpenc.bundle", "Bundle"),
    "verify": ("fpenc.verdict_api", "verify"),
    "Verdict": ("fpenc.verdict_api", "Verdict"),
    "Suspect": ("fpenc.suspects", "Suspect"),
    "FpencError": ("fpenc.errors", "FpencError"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fpenc' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
