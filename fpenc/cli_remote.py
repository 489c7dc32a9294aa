"""The ``fpenc`` flags of remote verification: ``verify``'s flags for a suspect behind an HTTP API,
and the ``serve`` command (a suspect file behind both protocols; :mod:`fpenc.serve`)."""

from __future__ import annotations


def add_remote_flags(p) -> None:
    """``fpenc verify``'s flags for ``http(s)://`` suspects (:mod:`fpenc.remote_client`)."""
    g = p.add_argument_group("remote suspects (a URL instead of a file)")
    g.add_argument("--protocol", default="auto", choices=["auto", "v2", "json"], help="v2 (Open Inference "
                   "Protocol / KServe v2) or json (plain, docs/remote.md); auto: v2 when /v2/health/ready answers")  # fmt: skip
    g.add_argument("--model-name", default=None, help="the v2 model (default: from the URL, else the first ready one)")
    g.add_argument("--max-queries", type=int, default=None, help="images the server may be asked at most; a verdict "
                   "that needs more is refused before any query")  # fmt: skip
    g.add_argument("--answer-log", default=None, metavar="FILE", help="answers already bought (JSON lines): an "
                   "interrupted verification resumes from it (default: .fpenc-answers/<url and bundle>.jsonl)")  # fmt: skip
    g.add_argument("--rate", type=float, default=None, help="requests per second at most")
    g.add_argument("--batch-size", type=int, default=256, help="images per request (default 256)")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")


def add_serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a suspect file over HTTP (Open Inference Protocol v2 and plain JSON)",
        description="Serves MODEL_FILE (ONNX, TorchScript in the sandbox, .pt2 with --trusted-suspect) at "
        "/v2/models/<stem>/infer and /predict, for trying `fpenc verify --suspect http://HOST:PORT`.",
    )
    p.add_argument("model", metavar="MODEL_FILE")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--answer", default="probs", help="what it reveals: probs, topk:K or label (a defence)")
    p.add_argument("--round", type=int, default=None, metavar="D", help="round probabilities to D decimals (a defence)")
    p.add_argument("--trusted-suspect", action="store_true", help="allow a .pt2 file (its loader unpickles)")
    p.add_argument(
        "--jpeg", type=int, default=None, metavar="Q", help="re-encode every query as JPEG of quality Q (a defence)"
    )
    p.add_argument(
        "--input-noise", type=float, default=0.0, metavar="STD", help="Gaussian noise on the queries (a defence)"
    )
    p.add_argument(
        "--median", type=int, default=0, metavar="K", help="a K x K median filter on the queries (a defence)"
    )
    p.add_argument(
        "--prob-noise", type=float, default=0.0, metavar="STD", help="Gaussian noise on the probabilities (a defence)"
    )
    p.add_argument(
        "--detector",
        type=int,
        default=0,
        metavar="T",
        help="answer at random the queries that share >= T of 50 window hashes with an earlier one "
        "(a Blacklight-style near-duplicate detector; a defence)",
    )


def cmd_serve(args) -> int:
    from fpenc.serve import serve
    from fpenc.serve_defences import Defences

    guard = Defences(
        jpeg=args.jpeg,
        input_noise=args.input_noise,
        median=args.median,
        prob_noise=args.prob_noise,
        detector=args.detector,
    )
    serve(
        args.model, args.host, args.port, args.trusted_suspect, answer=args.answer, round_to=args.round, defences=guard
    )
    return 0
