"""Fingerprint every model of a zoo with the victim's key, cached per model and key.

``runs/<name>/fingerprints/<model id>.pt`` holds ``fingerprints [U, V, 2NK]`` and the hashes
of the model, UAP bank and key it was computed from; a changed input means recomputation.
"""

from __future__ import annotations

import time

import torch

from fpenc.config import PipelineConfig
from fpenc.fingerprint.fingerprints import fingerprints
from fpenc.io import load_tensors, save_tensors, sha256_file

FORMAT = "fpenc-fingerprints/1"


def fingerprint_zoo(cfg: PipelineConfig, api: str = "probs", log=print, ids=None) -> dict[str, torch.Tensor]:
    """``{model id: fingerprints [U, V, 2NK]}`` for every manifest model (victim included), or only
    for the victim and the models in ``ids`` (``fpenc fit`` never queries the reference and test
    models)."""
    from fpenc.io import lock_run_dir

    lock_run_dir(cfg.run_dir)
    from fpenc.rundir import RunDir
    from fpenc.suspects import from_manifest_entry

    run_dir = RunDir(cfg.run_dir)
    manifest = run_dir.load_manifest()
    bank_sha, key_sha = sha256_file(run_dir.uaps), sha256_file(run_dir.key)
    from fpenc.fingerprint.key import load_key
    from fpenc.uap.bank import load_bank

    uaps, view_images = load_bank(run_dir.uaps)["uaps"], load_key(run_dir.key)["view_images"]
    out: dict[str, torch.Tensor] = {}
    t0, computed = time.perf_counter(), 0
    wanted = None if ids is None else {*ids, "victim"}
    for entry in manifest["models"]:
        if wanted is not None and entry["id"] not in wanted and entry["role"] != "victim":
            continue
        path = run_dir.fingerprint(entry["id"])
        meta = {"model_sha256": entry["sha256"], "uaps_sha256": bank_sha, "key_sha256": key_sha, "api": api}
        if path.exists():
            cached = load_tensors(path, FORMAT, what="fingerprint file", remedy="delete it to recompute it")
            if {k: cached.get(k) for k in meta} == meta:
                out[entry["id"]] = cached["fingerprints"]
                continue
        suspect = from_manifest_entry(entry, run_dir, api=api, num_classes=manifest["num_classes"])
        fps = fingerprints(suspect, uaps, view_images)
        save_tensors(path, {**meta, "fingerprints": fps, "queries": suspect.queries}, FORMAT)
        out[entry["id"]] = fps
        computed += 1
    log(
        f"[done] fingerprints of {len(out)} models ({computed} computed, {len(out) - computed} cached) "
        f"in {time.perf_counter() - t0:.2f}s; shape per model {tuple(next(iter(out.values())).shape)}"
    )
    return out
