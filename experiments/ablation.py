"""One knob of the method swept on one zoo (Peng et al., CVPR 2022, §5.3–5.4 and App. C): for each
value, the encoder is trained (``fpenc fit``) and the test models are scored (``fpenc test``) on
the base config's zoo and UAP bank, shared, not retrained; the key, fingerprints and encoder are
made anew. Reports, per value, the encoder's AUC on the test models (fingerprint pairs and
models), the similarity gap (copies minus independent models) and the verdicts; writes the
results JSON and a figure.

    python experiments/ablation.py -c configs/fmnist_demo.yaml --knob pipeline.key.num_datapoints \\
        --values 10 25 50 100 200 --name n_datapoints \\
        --out experiments/results/ablation_n_datapoints.json --plot experiments/results/ablation_n_datapoints.png

``--knob`` is a dotted path into the stacked configs (``pipeline.key.num_views``, ``data.api``);
``--set`` adds fixed settings to every value (``--set pipeline.key.selection=kmeans``). Each value
runs in its own run directory ``<runs_dir>/<base name>-<name>-<value>/`` and exports its bundle
there, not to ``checkpoints/``; its overlay and result go to ``<runs_dir>/ablations/`` (resumable: a
finished value is read back, not rerun).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: fpenc, benchmarks.harness
from benchmarks.harness import config_args, configs, load_run, report_summary, run_fpenc, save_figure, write_results
from fpenc.config.parse import merge

ALPHAS = (0.01, 0.05, 0.2)
"""The verdict's alpha, the first of these above the value's p-value floor (the report says which)."""


def nested(path: str, value) -> dict:
    """``{"a": {"b": value}}`` of the dotted ``path`` ``a.b``."""
    out = value
    for key in reversed(path.split(".")):
        out = {key: out}
    return out


def run_value(base: list[str], fixed: dict, knob: str, raw: str, name: str) -> dict:
    """Fit and test the base configs with ``knob = raw`` (YAML-parsed) on the base run's shared zoo."""
    import yaml

    base_cfg, base_run = load_run(base)
    value = yaml.safe_load(raw)
    run_name = f"{base_cfg.name}-{name}-{re.sub(r'[^A-Za-z0-9.]+', '_', raw)}"
    overlay = merge(merge(fixed, nested(knob, value)), {"pipeline": {"name": run_name}})
    overlay_path, done = _files(base_cfg, run_name)
    _, run = load_run([*base, _write_yaml(overlay_path, overlay)])
    stack = [a for c in [*base, str(overlay_path)] for a in ("-c", c)]
    if done.is_file():
        print(f"[skip] {knob}={raw}: {done} exists", file=sys.stderr)
        return json.loads(done.read_text())
    run.share_zoo_of(base_run)
    quiet = ["--trainer.logger", "false", "--model.export_dir", str(run)]
    t0 = time.perf_counter()
    run_fpenc("fit", *stack, *quiet)
    fit_s = time.perf_counter() - t0
    for alpha in ALPHAS:  # a key whose reference models spread widely can put the p-value floor above 0.01
        try:
            run_fpenc("test", *stack, *quiet, "--ckpt_path", "best", "--model.alpha", str(alpha))
            break
        except SystemExit:
            if alpha == ALPHAS[-1]:
                raise
    report = json.loads(run.report_json.read_text())
    result = {
        "value": value,
        **report_summary(report),
        "num_fingerprints": report["num_fingerprints"],
        "alpha": report["alpha"],
        "p_value_floor": report["p_value_floor"],
        "fit_seconds": round(fit_s, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    from fpenc.io import write_json

    write_json(done, result)
    return result


def _files(base_cfg, run_name: str) -> tuple[Path, Path]:
    """This value's overlay and its finished result, in ``<runs_dir>/ablations/``."""
    folder = Path(base_cfg.runs_dir) / "ablations"
    return folder / f"{run_name}.yaml", folder / f"{run_name}.json"


def _write_yaml(path: Path, data: dict) -> str:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """``[("a.b", value)]`` of a nested dict."""
    out = []
    for k, v in d.items():
        out += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["values"]
    labels = ["/".join(map(str, v.values())) if isinstance(v, dict) else str(v) for v in (r["value"] for r in rows)]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, style in (("auc_pairs", "o-"), ("auc_models", "s--")):
        a.plot(labels, [r[key] for r in rows], style, label=key.replace("_", " "))
    a.set_ylim(0, 1.02)
    a.set_ylabel("AUC, test models")
    a.legend(fontsize=8)
    b.plot(labels, [r["similarity_copies"] for r in rows], "o-", c="tab:red", label="copies")
    b.plot(labels, [r["similarity_independent"] for r in rows], "o-", c="tab:blue", label="independent")
    b.set_ylabel("mean similarity to the victim")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.set_xlabel(result["knob"])
        ax.grid(alpha=0.3)
    fixed = ", ".join(f"{k}={v}" for k, v in _flat(result["fixed"]))
    fig.suptitle(f"{result['name']}: {result['base']}" + (f" with {fixed}" if fixed else ""), fontsize=9)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config_args(ap)
    ap.add_argument("--knob", required=True, help="dotted config path, e.g. pipeline.key.num_datapoints or data.api")
    ap.add_argument("--values", nargs="+", required=True, help="values (YAML), e.g. 10 25 50 or probs topk:3 label")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="fixed for every value")
    ap.add_argument("--name", required=True, help="the ablation's name (run directories, figure title)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args(argv)
    import yaml

    base = configs(args)
    fixed: dict = {}
    for item in args.set:
        path, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set must be PATH=VALUE, got '{item}'")
        fixed = merge(fixed, nested(path, yaml.safe_load(raw)))
    cfg, _ = load_run(base)
    rows = [run_value(base, fixed, args.knob, raw, args.name) for raw in args.values]
    result = {"name": args.name, "base": " + ".join(base), "knob": args.knob, "fixed": fixed, "values": rows}
    write_results(args.out, result, seed=cfg.seed, argv=argv)
    if args.plot:
        plot(result, args.plot)
    for r in rows:
        print(
            f"{args.knob}={r['value']}: AUC pairs {r['auc_pairs']:.3f} models {r['auc_models']:.3f}, "
            f"gap {r['similarity_gap']:+.3f}, derived {r['piracy_derived']} copies / {r['homologous_derived']} "
            f"independent, {r['total_seconds']:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
