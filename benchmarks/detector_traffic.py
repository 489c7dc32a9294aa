"""What the near-duplicate detector of `fpenc serve --detector T` flags: ordinary traffic against
fpenc's queries, each stream sent to a fresh detector in the order a verifier sends it.

Streams: 6,000 random test images (ordinary traffic); the bundle's 200 labelled images; the key's
first view (N distinct datapoints); every clean view; the clean views then every UAP-perturbed
query (what a verifier that repeats images would send after the labelled images); what `fpenc
verify` sends a remote suspect: the labelled images, then each distinct image once. Writes the share flagged per
stream and threshold, and how many distinct images the key's views hold.

    python benchmarks/detector_traffic.py -c configs/fmnist_demo.yaml \\
        --bundle checkpoints/fmnist_demo.fpenc.safetensors --out benchmarks/results/detector_traffic.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, write_results


def distinct_in_order(x):
    """The rows of ``x`` without repeats, each at its first place (as the remote client asks them)."""
    from fpenc.remote_client import AnswerLog

    seen, keep = set(), []
    for i, image in enumerate(x):
        key = AnswerLog.key(image.numpy())
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return x[keep]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap, required=False, default=["configs/fmnist_demo.yaml"])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--thresholds", type=int, nargs="+", default=[25, 40])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/detector_traffic.json"))
    args = ap.parse_args(argv)
    import torch

    from fpenc.bundle import load_bundle
    from fpenc.data.datasets import load_data
    from fpenc.serve_detector import DuplicateDetector

    cfg, _ = load_run(configs(args))
    b = load_bundle(args.bundle)
    arrays = load_data(cfg.data)
    g = torch.Generator().manual_seed(cfg.seed)
    views = b.view_images.float() / 255  # [V, N, C, H, W]
    clean = views.reshape(-1, *views.shape[2:])
    perturbed = torch.cat([(views[v] + u).clamp(0, 1) for u in b.uaps.float() for v in range(len(views))])
    streams = {
        "random test images (6,000)": arrays.test_x[torch.randperm(len(arrays.test_x), generator=g)[:6000]].float()
        / 255,
        "the bundle's labelled images": b.sanity_images.float() / 255,
        "the key's first view": views[0],
        "every clean view": clean,
        "clean views, then UAP-perturbed": torch.cat([clean, perturbed]),
        "what fpenc verify sends a remote suspect (each distinct image once)": distinct_in_order(
            torch.cat([b.sanity_images.float() / 255, clean, perturbed])
        ),
    }
    distinct = len(torch.unique(b.view_images.reshape(len(clean), -1), dim=0))
    result = {"bundle_sha256": b.sha256, "key_view_images": len(clean), "key_distinct_images": distinct, "streams": {}}
    print(f"the key's {len(clean)} view images are {distinct} distinct images")
    for name, x in streams.items():
        row = {"queries": len(x)}
        for t in args.thresholds:
            flagged = DuplicateDetector(t, seed=cfg.seed).flag(x)
            row[f"flagged_T{t}"] = round(float(flagged.float().mean()), 4)
            row[f"flagged_T{t}_count"] = int(flagged.sum())
        result["streams"][name] = row
        print(name, row, flush=True)
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
