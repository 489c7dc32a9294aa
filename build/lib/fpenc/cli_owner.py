"""The ``fpenc`` commands of a model owner with a model of her own: ``protect`` (her model in, a
bundle out) and ``export`` (a model as the suspect file ``fpenc verify`` reads). Their flags only;
the commands are :func:`fpenc.bundle_commands.cmd_protect` and ``cmd_export``."""

from __future__ import annotations

import argparse


def add_owner_parsers(sub) -> None:
    """Add ``protect`` and ``export`` to the ``fpenc`` subcommands ``sub``."""
    p = sub.add_parser(
        "protect",
        help="protect your own model in one command: zoo, UAPs, key, encoder, report and bundle",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Your classifier (a state_dict saved by plain PyTorch, and its class) becomes the victim of a "
        "base config (default: the shipped fmnist_demo); fpenc builds the zoo around it, never retraining it, "
        "and writes the verification bundle. Rerun the same command to resume.",
        epilog="""model contract: the class takes float images [B, C, H, W] in [0, 1] (its normalisation
inside) and returns [B, classes] logits; it must be importable (PYTHONPATH).

example:
  fpenc protect --model mine.pt --class-path mypkg.nets.MyNet --init-args '{"width": 32}'""",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="FILE",
        help="your model's state_dict (torch.save(model.state_dict(), FILE) or .safetensors)",
    )
    p.add_argument("--class-path", required=True, help="its class, importable: package.module.ClassName")
    p.add_argument(
        "--init-args", default="{}", metavar="JSON", help="the class's keyword arguments as JSON (default {})"
    )
    p.add_argument("--config", "-c", action="append", metavar="YAML", help="base config(s) (default: fmnist_demo)")
    p.add_argument(
        "--name", default=None, help="the run's name: runs/<name>/, <name>.fpenc.safetensors (default: the file's stem)"
    )
    p.add_argument("--data", default=None, metavar="DATASET", help="the task's dataset (default: the base config's)")
    p.add_argument("--data-root", default=None, metavar="DIR", help="where the dataset's files are")
    p = sub.add_parser(
        "export",
        help="write a model as a suspect file fpenc verify reads (ONNX or TorchScript)",
        description="Exports an fpenc zoo weights file, or your own class's state_dict (--class-path), as "
        "ONNX (.onnx, needs the onnx extra) or TorchScript (.pt): images [B, C, H, W] in [0, 1] in, logits "
        "out, the batch dimension dynamic. A file made here is what a suspect's owner should hand over.",
    )
    p.add_argument(
        "model", metavar="WEIGHTS", help="an fpenc weights file (runs/<name>/models/<id>.pt), or a state_dict"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the suspect file: .onnx or .pt")
    p.add_argument("--class-path", default=None, help="the model's class when WEIGHTS is a plain state_dict")
    p.add_argument("--init-args", default="{}", metavar="JSON", help="the class's keyword arguments (JSON)")
    p.add_argument(
        "--input-shape", default=None, metavar="C,H,W", help="one image's shape (default: the weights file's; 1,28,28)"
    )
