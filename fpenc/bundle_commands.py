"""The ``fpenc`` commands on a bundle, which need no run directory and never import Lightning:
``verify``, ``calibrate``, ``keygen`` and ``sign`` (their flags are parsed by :mod:`fpenc.cli`)."""

from __future__ import annotations


def suspect_paths(patterns: list[str]) -> list[str]:
    """Suspect files from command-line names and glob patterns (a pattern the shell left unexpanded,
    e.g. quoted, is expanded here), in the order given, each once.

    Raises:
        ConfigError: no suspect given, or a pattern that matches no file.
    """
    import glob

    from fpenc.errors import ConfigError

    if not patterns:
        raise ConfigError("give the suspect model file(s): fpenc verify --bundle B SUSPECT [SUSPECT ...]")
    out: list[str] = []
    for pattern in patterns:
        remote = pattern.startswith(("http://", "https://"))
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) and not remote else [pattern]
        if not matches:
            raise ConfigError(f"no file matches '{pattern}'; check the path or the pattern")
        out += [m for m in matches if m not in out]
    return out


def remote_suspect(args, bundle, url: str, api: str):
    """A suspect behind ``url``, its budget checked up front against what one verdict needs."""
    import hashlib
    from pathlib import Path

    from fpenc.errors import ConfigError
    from fpenc.remote_client import from_url
    from fpenc.verification import queries_needed

    log = args.answer_log or Path(".fpenc-answers") / (
        hashlib.sha256(f"{url}|{bundle.commitment}".encode()).hexdigest()[:16] + ".jsonl"
    )
    need = queries_needed(bundle, args.fingerprints, args.seed)
    if args.max_queries is not None and need > args.max_queries and not Path(log).is_file():
        raise ConfigError(
            f"a verdict needs {need} queries but --max-queries is {args.max_queries}: raise it, or use fewer "
            "fingerprint pairs (--fingerprints)"
        )
    return from_url(
        url, api=api, outputs=args.outputs, num_classes=bundle.num_classes, protocol=args.protocol,
        model_name=args.model_name, max_queries=args.max_queries, answer_log=log, rate=args.rate, timeout=args.timeout,
        batch_size=args.batch_size,
    )  # fmt: skip


def cmd_verify(args) -> int:
    from fpenc.bundle import load_bundle
    from fpenc.errors import ConfigError, FpencError
    from fpenc.remote_client import is_url
    from fpenc.suspects import from_file
    from fpenc.verdict import DEFAULT_ALPHA
    from fpenc.verification import verify_suspect
    from fpenc.verify_output import check_fail_on, error_row, exit_code, render

    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    fail_on = check_fail_on(args.fail_on)
    bundles = args.bundle if isinstance(args.bundle, list) else [args.bundle]
    if getattr(args, "suspects_from", None):
        from fpenc.cli_batch import cmd_verify_batch

        return cmd_verify_batch(args, fail_on)
    if len(bundles) > 1 or getattr(args, "out", None) or getattr(args, "executor", "local") != "local":
        raise ConfigError(
            "several --bundle, --out and --executor are for batch verification: add --suspects DIR_OR_LIST"
        )
    paths = suspect_paths([*args.suspects, *(args.suspect or [])])
    fmt = "json" if args.json else args.format
    bundle = load_bundle(bundles[0])
    signed = None
    if args.public_key:
        from fpenc.signing import verify_signature

        signed = verify_signature(bundle, args.public_key, args.signature)
    meta = bundle.meta
    api = args.api if args.api is not None else meta.get("api", "probs")
    alpha = args.alpha if args.alpha is not None else float(meta.get("alpha", DEFAULT_ALPHA))
    header = {
        "bundle": str(bundles[0]),
        "bundle_commitment": bundle.commitment,
        "signature": signed,
        "victim": meta.get("victim_id"),
        "dataset": meta.get("dataset"),
    }
    results = []
    for path in paths:
        try:
            if is_url(path):
                suspect = remote_suspect(args, bundle, path, api)
            else:
                suspect = from_file(
                    path, api=api, outputs=args.outputs, num_classes=bundle.num_classes, trusted=args.trusted_suspect
                )
            r = verify_suspect(bundle, suspect, num_fingerprints=args.fingerprints, alpha=alpha, seed=args.seed)
            extra = {}
            if getattr(suspect, "remote", None) is not None:
                m = suspect.remote
                extra = {"remote": {"protocol": m.protocol, "model_name": m.model_name, "queries_spent": m.spent,
                                    "answers_from_log": r["queries"] - m.spent, "answer_log": str(m.log.path)}}  # fmt: skip
            results.append({"suspect": str(path), "api": str(suspect.api), **r, **extra})
        except ConfigError:
            raise  # the same for every suspect (alpha, --fingerprints): stop at once
        except FpencError as err:
            if len(paths) == 1:
                raise
            results.append(error_row(str(path), str(err)))
    print(render(fmt, header, results))
    return exit_code(results, fail_on)


def _json_kwargs(text: str, flag: str) -> dict:
    import json

    from fpenc.errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{flag} is not JSON ({err.msg}); write it as '{{\"width\": 32}}'") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object of keyword arguments, e.g. '{{\"width\": 32}}'")
    return value


def cmd_export(args) -> int:
    """``fpenc export``: a model as the suspect file ``fpenc verify`` reads."""
    from pathlib import Path

    from fpenc.errors import ConfigError, WeightsFileError
    from fpenc.models import build_model
    from fpenc.suspect_export import export_model

    out = Path(args.out)
    if out.suffix.lower() not in (".onnx", ".pt"):
        raise ConfigError(f"--out {out}: name it .onnx (ONNX, recommended) or .pt (TorchScript)")
    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(s) for s in args.input_shape.split(","))
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"--input-shape {args.input_shape}: give C,H,W, e.g. 1,28,28")
    if args.class_path:  # the owner's own class and a plain state dict
        from fpenc.models.user_model import UserModel, import_class, load_user_state_dict

        shape = shape or (1, 28, 28)
        init_args = _json_kwargs(args.init_args, "--init-args")
        try:
            net = UserModel(
                import_class(args.class_path)(**init_args), {"arch": args.class_path, "init_args": init_args}
            )
        except TypeError as err:
            raise ConfigError(f"{args.class_path}({init_args}) failed: {err}; fix --init-args") from None
        load_user_state_dict(net, args.model)
    else:
        from fpenc.io import load_weights
        from fpenc.models.quantized import QUANTIZED

        try:
            payload = load_weights(args.model)
        except WeightsFileError as err:
            raise ConfigError(
                f"{err}; for your own model's state_dict give its class too: --class-path package.module.ClassName"
            ) from None
        config = payload["config"]
        if config.get(QUANTIZED):
            raise ConfigError(f"{args.model} is a real INT8 model: torch cannot export its quantized kernels")
        net = build_model(**config)
        net.load_state_dict(payload["state_dict"])
        shape = shape or tuple(config["input_shape"])
    path = export_model(net.eval(), shape, out)
    print(f"wrote {path}: images [B, {', '.join(map(str, shape))}] in [0, 1] -> [B, classes] logits")
    return 0


def cmd_protect(args) -> int:
    """``fpenc protect``: the owner's model as the victim of a base config, then the whole pipeline."""
    from pathlib import Path

    from fpenc.protection import DEFAULT_BASE, protect

    init_args = _json_kwargs(args.init_args, "--init-args")
    bundle = protect(
        class_path=args.class_path,
        weights=args.model,
        init_args=init_args,
        config=args.config or DEFAULT_BASE,
        name=args.name or Path(args.model).stem,
        dataset=args.data,
        data_root=args.data_root,
    )
    print(f"bundle:      {bundle.path}\nverify with: fpenc verify --bundle {bundle.path} SUSPECT.onnx")
    return 0


def cmd_keygen(args) -> int:
    from fpenc.signing import generate_keypair, key_id, load_key

    private, public = generate_keypair(args.out)
    print(f"private key: {private} (keep it secret)\npublic key:  {public} (key id {key_id(load_key(public, False))})")
    return 0


def cmd_sign(args) -> int:
    from fpenc.bundle import load_bundle
    from fpenc.signing import sign_bundle

    bundle = load_bundle(args.bundle)
    path = sign_bundle(bundle, args.key, args.out)
    print(f"commitment:  {bundle.commitment}\nsignature:   {path}")
    return 0


def cmd_calibrate(args) -> int:
    from fpenc.bundle import load_bundle
    from fpenc.calibration import calibrate, format_calibration, plot_calibration, suspect_files
    from fpenc.io import write_json

    if args.seed < 0:
        from fpenc.errors import ConfigError

        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    bundle = load_bundle(args.bundle)
    files = suspect_files(args.negatives)
    result = calibrate(
        bundle,
        files,
        api=args.api,
        outputs=args.outputs,
        num_fingerprints=args.fingerprints,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(format_calibration(result))
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.plot:
        title = f"{bundle.meta.get('name', '')}: calibration on {len(files)} negatives"
        print(f"wrote {plot_calibration(result, args.plot, title=title)}")
    return 0
