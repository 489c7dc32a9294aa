"""The ``fpenc`` commands on a bundle, which need no run directory and never import Lightning:
``verify``, ``calibrate``, ``keygen`` and ``sign`` (their flags are parsed by :mod:`fpenc.cli`)."""

from __future__ import annotations


def cmd_verify(args) -> int:
    import json

    from fpenc.bundle import load_bundle
    from fpenc.errors import ConfigError
    from fpenc.suspects import from_file
    from fpenc.verdict import DEFAULT_ALPHA, EXIT_CODES
    from fpenc.verify import verify_suspect

    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    bundle = load_bundle(args.bundle)
    signed = None
    if args.public_key:
        from fpenc.signing import verify_signature

        signed = verify_signature(bundle, args.public_key, args.signature)
    meta = bundle.meta
    api = args.api if args.api is not None else meta.get("api", "probs")
    alpha = args.alpha if args.alpha is not None else float(meta.get("alpha", DEFAULT_ALPHA))
    suspect = from_file(
        args.suspect, api=api, outputs=args.outputs, num_classes=bundle.num_classes, trusted=args.trusted_suspect
    )
    r = verify_suspect(bundle, suspect, num_fingerprints=args.fingerprints, alpha=alpha, seed=args.seed)
    if args.json:
        print(
            json.dumps(
                {
                    "bundle": str(args.bundle),
                    "suspect": str(args.suspect),
                    "api": str(suspect.api),
                    "bundle_commitment": bundle.commitment,
                    "signature": signed,
                    **r,
                }
            )
        )
        return EXIT_CODES[r["verdict"]]
    s, g = r["sanity"], r["gates"]
    ood = "" if g["ood_threshold"] is None else f" (limit {g['ood_threshold']:.3f})"
    print(f"bundle:      {args.bundle} (victim {meta.get('victim_id', '?')}, dataset {meta.get('dataset', '?')})")
    print(f"commitment:  {bundle.commitment}" + (f" (signed by key {signed['key_id']})" if signed else " (unsigned)"))
    print(f"suspect:     {args.suspect} (api {suspect.api})")
    print(
        f"sanity:      accuracy {s['accuracy']:.3f} on {s['labelled_images']} labelled images (min "
        f"{g['min_accuracy']:.3f}), label entropy {s['label_entropy']:.3f} (min {g['min_label_entropy']:.3f})"
    )
    print(
        f"agreement:   {r['agreement']:.4f} of the key's labels are the victim's (reference models "
        f"{r['reference_agreement_range'][0]:.3f}-{r['reference_agreement_range'][1]:.3f}, p {r['p_agreement']:.3g})"
    )
    print(
        f"similarity:  {r['similarity']:.4f} encoder similarity on {r['num_fingerprints']} fingerprint pairs "
        f"(reference {r['reference_similarity_range'][0]:.3f}-{r['reference_similarity_range'][1]:.3f}, "
        f"p {r['p_similarity']:.3g})"
    )
    print(f"distance:    {r['ood_distance']:.4f} to the nearest encoder-training model{ood}")
    print(
        f"p-value:     {r['p_value']:.3g} (test of the {r['statistic']} against the reference models; alpha "
        f"{alpha:g}; this bundle's floor {r['p_value_floor']:.3g})"
    )
    answers = "" if r["margin_answers"] is None else f", {r['margin_answers']:+.0f} key answers"
    print(
        f"margin:      {r['margin']:+.4f} above the agreement at which p = alpha ({r['agreement_threshold']:.4f}"
        f"{answers})" + ("; a near tie: a few answers would flip the test" if r["near_tie"] else "")
    )
    print(f"verdict:     {r['verdict']}")
    for reason in r["reasons"]:
        print(f"  because:   {reason}")
    print(f"queries:     {r['queries']} images ({r['seconds']:.2f} s)")
    return EXIT_CODES[r["verdict"]]


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
