"""False claims: can an accuser who builds the "fingerprint" from an innocent suspect get it convicted?

The accuser owns a victim V and its bundle, and wants an independently trained model S convicted.
The bundle's evidence is recomputed honestly in each forgery (the victim's fingerprints, the
reference models' agreement and similarities, the out-of-distribution gate's zoo embeddings): only
what the accuser chose is forged.

* ``cherry-picked key``: the key's images are the test images on which S gives the victim's
  answers and the reference models do not (``[S = V] - mean_R [R = V]`` over the clean image and
  its UAP twins, highest first) — a key "conferrable" to S, in the spirit of the literature's
  false-claim attacks on fingerprints;
* ``suspect's UAPs``: the honest key with UAPs computed on S instead of V (SGD-UAP at the bank's
  budget), so that S's perturbed answers follow directions of its own;
* both at once.

Each forged bundle judges S (and, to see how targeted it is, the other innocents and the demo's
copies); then what an honest verifier can check is measured on it: the sanity and
out-of-distribution gates, whether the bundle's key is the one the pipeline re-derives from the
victim, the recorded key settings and seed (an arbiter holding the victim's weights can redo it),
and whether its SHA-256 is the commitment the owner published before the dispute.

    python experiments/false_claim.py -c configs/fmnist_demo.yaml \\
        --bundle checkpoints/fmnist_demo.fpenc.safetensors --out experiments/results/false_claim_fmnist_demo.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, load_run, write_results


@torch.inference_mode()
def labels(net, x: torch.Tensor, batch: int = 2000) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])


def cherry_pick(victim, suspect, references, images: torch.Tensor, uaps: torch.Tensor, count: int) -> torch.Tensor:
    """Indices ``[count]`` of ``images`` (uint8 ``[M, C, H, W]``) where ``suspect`` agrees with the
    victim most beyond the reference models, on the clean image and each UAP twin."""
    x = images.float() / 255.0
    variants = [x] + [(x + u).clamp(0, 1) for u in uaps.float()]
    gain = torch.zeros(len(x))
    for xv in variants:
        v = labels(victim, xv)
        refs = torch.stack([(labels(r, xv) == v).float() for r in references]).mean(0)
        gain += (labels(suspect, xv) == v).float() - refs
    return torch.argsort(-gain, stable=True)[:count]


def forge(path: Path, honest, encoder, victim, references, zoo, uaps: torch.Tensor, view_images: torch.Tensor) -> None:
    """A bundle like ``honest`` with these UAPs and key images, its evidence recomputed from the models."""
    from fpenc.api import apply_api
    from fpenc.bundle import export_bundle
    from fpenc.fingerprint.fingerprints import fingerprints
    from fpenc.suspects import from_module
    from fpenc.verdict import pair_agreement, pair_similarities

    api, k = honest.meta.get("api", "probs"), honest.num_classes

    def fp(net) -> torch.Tensor:
        f = fingerprints(from_module(net), uaps, view_images)
        return apply_api(f.reshape(-1, k), api).reshape(-1, f.shape[-1])  # [P, 2NK]

    vf = fp(victim)
    with torch.inference_mode():
        hv = encoder.encode(vf)
        ref_f = [fp(r) for r in references]
        ref_s = torch.stack([pair_similarities(encoder.encode(f), hv) for f in ref_f])
        zoo_h = torch.stack([hv] + [encoder.encode(fp(m)) for m in zoo])
    ref_a = torch.stack([pair_agreement(f, vf, k) for f in ref_f])
    u, v = len(uaps), view_images.shape[0]
    export_bundle(
        path,
        encoder=encoder,
        uaps=uaps.float(),
        view_images=view_images,
        datapoints=honest.datapoints,
        views=honest.views,
        victim_fingerprints=vf.reshape(u, v, -1),
        reference_similarities=ref_s.float(),
        reference_agreement=ref_a.float(),
        sanity_images=honest.sanity_images,
        sanity_labels=honest.sanity_labels,
        zoo_embeddings=zoo_h.float(),
        meta=dict(honest.meta),
    )


def judge(bundle, net, alphas=(0.01, 0.05)) -> dict:
    """``fpenc verify``'s verdict on ``net`` at each alpha (0.01: the default; 0.05: an accuser's
    choice); ``refused`` where the alpha is at or below the bundle's p-value floor."""
    from fpenc.errors import ConfigError
    from fpenc.suspects import from_module
    from fpenc.verification import verify_suspect

    out = {}
    for alpha in alphas:
        try:
            r = verify_suspect(bundle, from_module(net), alpha=alpha)
        except ConfigError as err:  # alpha at or below the bundle's p-value floor: no verdict at all
            out[str(alpha)] = {"verdict": "refused", "reason": str(err)}
            continue
        out[str(alpha)] = {
            "verdict": r["verdict"],
            "p_value": float(f"{r['p_value']:.4g}"),
            "p_value_floor": float(f"{r['p_value_floor']:.4g}"),
            "agreement": round(r["agreement"], 4),
            "similarity": round(r["similarity"], 4),
            "passes_sanity_gates": r["sanity"]["accuracy"] >= bundle.gates().min_accuracy,
            "ood": r["ood_distance"] > (bundle.gates().ood_threshold or float("inf")),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--bundle", type=Path, required=True, help="the victim's honest bundle (make demo)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from fpenc.bundle import load_bundle
    from fpenc.data.datasets import load_data
    from fpenc.fingerprint.key import load_key
    from fpenc.uap.subspace import batched_sgd_uaps
    from fpenc.zoo.sets import assign_sets

    cfg, run = load_run(args.config)
    honest = load_bundle(args.bundle)
    entries = {e["id"]: e for e in run.load_manifest()["models"]}
    sets = assign_sets(cfg)
    victim = run.load_model(run.victim_entry())
    if honest.meta.get("victim_sha256") != run.victim_entry()["sha256"]:
        raise SystemExit(f"{args.bundle} was not exported for this run's victim")
    references = [run.load_model(entries[i]) for i in honest.meta["reference_models"]]
    zoo = [run.load_model(entries[i]) for i in honest.meta["zoo_embedding_models"][1:]]
    innocents = [i for i, s in sets.items() if s == "test" and entries[i]["role"] == "homologous"]
    copies = [i for i, s in sets.items() if s == "test" and entries[i]["role"] == "piracy"]
    nets = {i: run.load_model(entries[i]) for i in innocents + copies}
    arrays = load_data(cfg.data)
    sanity = {x.numpy().tobytes() for x in honest.sanity_images}  # the gates' images never enter a key
    images = arrays.test_x[[i for i, x in enumerate(arrays.test_x) if x.numpy().tobytes() not in sanity]]
    # the key the pipeline derives from the victim and the recorded settings
    rederived = load_key(run.key)["view_images"]
    enc = honest.encoder()
    shape = honest.view_images.shape
    out = {
        "honest": {
            "sha256": honest.sha256,
            "key_rederived": bool(torch.equal(rederived, honest.view_images)),
            "innocents": {i: judge(honest, nets[i]) for i in innocents},
        },
        "forgeries": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for target in innocents:
            s = nets[target]
            picked = images[cherry_pick(victim, s, references, images, honest.uaps, shape[0] * shape[1])]
            own_uaps = batched_sgd_uaps(
                s,
                images,
                len(honest.uaps),
                float(honest.meta["uap"]["eps"]),
                "linf",
                steps=100,
                batch_size=64,
                seed=cfg.seed,
            )
            for attack, (uaps, views) in {
                "cherry-picked key": (honest.uaps, picked.reshape(shape)),
                "suspect's UAPs": (own_uaps, honest.view_images),
                "both": (own_uaps, picked.reshape(shape)),
            }.items():
                path = Path(tmp) / f"{target}-{attack.replace(' ', '_')}.safetensors"
                forge(path, honest, enc, victim, references, zoo, uaps, views)
                b = load_bundle(path)
                print(f"{target} / {attack}: ", end="", flush=True)
                row = {
                    "sha256": b.sha256,
                    "commitment_matches_published": b.sha256 == honest.sha256,
                    "key_rederived": bool(torch.equal(rederived, b.view_images)),
                    "target": judge(b, s),
                    "other_innocents": {
                        i: judge(b, nets[i], (0.05,))["0.05"]["verdict"] for i in innocents if i != target
                    },
                    "copies": {i: judge(b, nets[i], (0.01,))["0.01"]["verdict"] for i in copies},
                }
                print({a: (v["verdict"], v.get("p_value")) for a, v in row["target"].items()}, flush=True)
                out["forgeries"].setdefault(target, {})[attack] = row
    write_results(args.out, out, seed=cfg.seed, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
