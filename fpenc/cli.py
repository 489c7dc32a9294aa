"""The ``fpenc`` command. Stage commands parse their own flags; heavy imports happen lazily, so
``fpenc --help`` answers without importing torch or Lightning.

    fpenc zoo --config configs/fmnist_demo.yaml     # build the model zoo, print its table
    fpenc verify --bundle victim.safetensors --suspect model.onnx   # test one suspect
"""

from __future__ import annotations

import argparse
import os
import sys

from fpenc import __version__
from fpenc.bench.command import add_parser as add_bench_parser
from fpenc.bench.command import cmd_bench
from fpenc.bundle_commands import cmd_calibrate, cmd_export, cmd_keygen, cmd_protect, cmd_sign, cmd_verify
from fpenc.cli_batch import add_batch_flags
from fpenc.cli_owner import add_owner_parsers
from fpenc.cli_remote import add_remote_flags, add_serve_parser, cmd_serve
from fpenc.executor import add_executor_flags
from fpenc.stage_commands import cmd_fingerprint, cmd_subspace, cmd_uap, cmd_zoo


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        action="append",
        required=True,
        metavar="YAML",
        help="pipeline config; repeat to stack overlays (later files win)",
    )
    p.add_argument("--runs-dir", default=None, help="where runs/<name>/ lives (default: the config's runs_dir, 'runs')")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_executor_flags(p)  # the zoo's models: one after another here, or Ray tasks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fpenc",
        description="Prove that a suspect model was derived from yours: UAP fingerprints + a contrastive "
        "fingerprint encoder (Peng et al., CVPR 2022).",
    )
    parser.add_argument("--version", action="version", version=f"fpenc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # fit / validate / test are LightningCLI subcommands (main() hands them over before argparse);
    # they are listed here for --help only.
    sub.add_parser(
        "fit",
        help="train the fingerprint encoder, running earlier stages if needed (LightningCLI: fpenc fit --help)",
        add_help=False,
    )
    sub.add_parser("validate", help="validate an encoder checkpoint (LightningCLI)", add_help=False)
    sub.add_parser(
        "test",
        help="score the test models with a trained encoder: report.json/md, CDF plot, "
        "bundle in checkpoints/ (needs --ckpt_path)",
        add_help=False,
    )
    p = sub.add_parser(
        "zoo",
        help="build the model zoo (victim, piracy, homologous models) of a config",
        description="Train the victim, piracy (extracted) and homologous models a config "
        "describes; skips finished models; writes runs/<name>/manifest.json.",
    )
    _add_config(p)
    p = sub.add_parser(
        "uap",
        help="compute (and cache) the victim's UAP bank; report how it fools the zoo",
        description="Builds the zoo first if needed. Writes runs/<name>/uaps.pt.",
    )
    _add_config(p)
    p = sub.add_parser(
        "fingerprint",
        help="select datapoints/views and fingerprint every zoo model",
        description="Runs zoo and uap first if their artifacts are missing; writes "
        "runs/<name>/key.pt and runs/<name>/fingerprints/<id>.pt.",
    )
    _add_config(p)
    p.add_argument("--api", default="probs", help="what suspects reveal: probs, topk:K or label (default probs)")
    p = sub.add_parser(
        "subspace",
        help="UAP subspace analysis (paper §4.1, eq. 5, Figure 2)",
        description="Computes many UAPs of the victim, a piracy and a homologous model and "
        "reports the distribution inconsistency of each against the victim's UAP subspace.",
    )
    _add_config(p)
    p.add_argument("--num-uaps", type=int, default=64, help="UAPs per model (default 64; the paper: 784 = d on FMNIST)")
    p.add_argument("--steps", type=int, default=60, help="optimisation steps per batch of UAPs (default 60)")
    p.add_argument(
        "--reading",
        choices=["profile_l1", "principal_angles", "projection_energy"],
        default="profile_l1",
        help="the reading of eq. 5 shown as D and plotted (all three are computed; default profile_l1)",
    )
    p.add_argument(
        "--energy-share",
        type=float,
        default=0.9,
        help="the victim subspace: the fewest principal directions holding this share of its energy (default 0.9)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per UAP per step (default 32)")
    p.add_argument("--norm", choices=["linf", "l2"], help="default: the config's uap.norm")
    p.add_argument("--eps", type=float, help="default: the config's uap.eps")
    p.add_argument("--lr", type=float, help="Adam step on the UAPs (default: the config's uap.lr)")
    p.add_argument(
        "--init-scale",
        type=float,
        default=1e-3,
        help="random start, as a share of eps (default 0.001, near zero; 1: anywhere in the ball)",
    )
    p.add_argument("--chunk", type=int, default=64, help="UAPs computed (and cached) at once (default 64)")
    p.add_argument(
        "--models",
        nargs="+",
        metavar="ID",
        help="suspects to compare (default: the piracy and "
        "homologous models of the first piracy model's architecture and optimizer)",
    )
    p = sub.add_parser(
        "verify",
        help="judge suspect model files against an exported bundle",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fingerprint a suspect (TorchScript, torch.export .pt2 or ONNX file; never a pickle) "
        "and judge it against the bundle's reference population of independent models. Needs no run "
        "directory and no Lightning.",
        epilog="""suspect contract: the model takes float images [B, C, H, W] in [0, 1] (its own
normalisation inside) and returns [B, classes] logits or probabilities.

verdicts (exit codes; several suspects: the highest; with --fail-on: 1 if any matches, else 0):
  derived          10  the suspect is shown to come from the victim (p < alpha)
  not shown         0  no evidence beyond what independent models reach
  not assessable   11  not a working model of the task, or outside what the bundle can judge
  (error)           2  bad input; the message says what to do (other suspects are still judged)

examples:
  fpenc verify --bundle owner.fpenc.safetensors suspect.onnx
  fpenc verify --bundle owner.fpenc.safetensors 'suspects/*.onnx' b.pt --format csv --fail-on derived
  fpenc verify --suspects suspects/ --bundle a.fpenc.safetensors --bundle b.fpenc.safetensors --out results.jsonl""",
    )
    p.add_argument(
        "--bundle", required=True, action="append", help="the exported bundle (.safetensors); several with --suspects"
    )
    p.add_argument(
        "suspects",
        nargs="*",
        metavar="SUSPECT",
        help="suspect model files or glob patterns (.onnx, .pt TorchScript, .pt2)",
    )
    p.add_argument("--suspect", action="append", help="a suspect model file (repeatable; same as SUSPECT)")
    p.add_argument(
        "--api", default=None, help="what the suspect reveals: probs, topk:K or label (default: the bundle's)"
    )
    p.add_argument(
        "--outputs",
        default="auto",
        choices=["auto", "logits", "probs"],
        help="what the suspect file returns (default auto: probabilities if rows sum to 1)",
    )
    p.add_argument(
        "--fingerprints",
        type=int,
        default=None,
        metavar="F",
        help="fingerprint pairs to query, 2..U*V (default: all of them, so no random draw)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="significance level (default: the bundle's, else 0.01); must be above the bundle's p-value floor",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the pair draw when --fingerprints is below U*V (default 0)"
    )
    p.add_argument(
        "--trusted-suspect",
        action="store_true",
        help="load a torch.export (.pt2) file, whose loader "
        "unpickles parts of it (can run code): only for files you trust; prefer ONNX",
    )
    p.add_argument(
        "--public-key",
        metavar="PEM",
        help="check the bundle's Ed25519 signature with this trusted "
        "public key (from the bundle's owner) before anything else",
    )
    p.add_argument("--signature", metavar="FILE", help="the signature file (default: <bundle>.sig.json)")
    p.add_argument(
        "--format",
        choices=["text", "json", "csv"],
        default="text",
        help="text (default), json (one document, schema fpenc-verify/1) or csv (one row per suspect)",
    )
    p.add_argument("--json", action="store_true", help="same as --format json")
    add_remote_flags(p)
    add_batch_flags(p)
    p.add_argument(
        "--fail-on",
        action="append",
        metavar="VERDICT",
        help="exit 1 when any suspect's verdict is one of these (comma-separated or repeated: derived, "
        "'not shown', 'not assessable'), else 0; errors still exit 2",
    )
    add_owner_parsers(sub)
    add_serve_parser(sub)
    p = sub.add_parser(
        "keygen",
        help="make an Ed25519 key pair for signing bundles",
        description="Writes <stem>.key (private, mode 0600) and <stem>.pub (give this to verifiers).",
    )
    p.add_argument("--out", required=True, metavar="STEM", help="path stem of the two key files")
    p = sub.add_parser(
        "sign",
        help="sign a bundle's commitment (fixes the claim before a dispute)",
        description="Writes <bundle>.sig.json: the bundle's commitment (SHA-256 over every header "
        "value and tensor), its Ed25519 signature and a copy of the signed header.",
    )
    p.add_argument("--bundle", required=True)
    p.add_argument("--key", required=True, metavar="PEM", help="the private key (fpenc keygen)")
    p.add_argument("--out", default=None, help="signature file (default: <bundle>.sig.json)")
    p = sub.add_parser(
        "calibrate",
        help="measure a bundle's false-accusation rate on your own independent models",
        description="Verify every model file in --negatives (models known NOT to derive from the "
        "victim) against the bundle and print, for each nominal alpha, the observed share accused "
        "with its Clopper-Pearson 95%% interval.",
    )
    p.add_argument("--bundle", required=True, help="the exported bundle (.safetensors)")
    p.add_argument(
        "--negatives", required=True, metavar="DIR", help="a folder of independent model files (.pt, .pt2, .onnx)"
    )
    p.add_argument("--api", default=None, help="what the models reveal (default: the bundle's)")
    p.add_argument("--outputs", default="auto", choices=["auto", "logits", "probs"])
    p.add_argument("--fingerprints", type=int, default=None, metavar="F", help="pairs per verdict (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair draw with --fingerprints (default 0)")
    p.add_argument("--json", metavar="FILE", help="also write the full result as JSON")
    p.add_argument("--plot", metavar="PNG", help="also plot nominal alpha vs observed rate")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_bench_parser(sub)
    return parser


LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")
COMMANDS = {
    "zoo": cmd_zoo,
    "uap": cmd_uap,
    "fingerprint": cmd_fingerprint,
    "subspace": cmd_subspace,
    "verify": cmd_verify,
    "protect": cmd_protect,
    "export": cmd_export,
    "serve": cmd_serve,
    "calibrate": cmd_calibrate,
    "keygen": cmd_keygen,
    "sign": cmd_sign,
    "bench": cmd_bench,
}


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``fpenc`` console script; returns the exit code."""
    os.environ.setdefault("WANDB_MODE", "offline")
    args = list(sys.argv[1:] if args is None else args)
    if args and args[0] in LIGHTNING_SUBCOMMANDS:  # LightningCLI parses these itself
        from fpenc import lightning_cli

        return lightning_cli.main(args)  # (tunes the allocator too)
    from fpenc.allocator import tune_allocator

    tune_allocator()  # CPU training: keep freed batches in the process (see fpenc/allocator.py)
    parser = build_parser()
    ns, extra = parser.parse_known_args(args)
    if extra:  # verify's suspects may follow its options (argparse stops a '*' positional at the first option)
        if ns.command != "verify" or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        ns.suspects += extra
    if ns.command is None:
        parser.print_help()
        return 2
    from fpenc.errors import FpencError

    try:
        return COMMANDS[ns.command](ns)
    except FpencError as err:
        print(f"fpenc {ns.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fpenc {ns.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
