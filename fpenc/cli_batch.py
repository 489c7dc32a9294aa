"""``fpenc verify --suspects DIR_OR_LIST --bundle B [--bundle B2 ...] --out results.jsonl``: many
suspect files judged against one or more bundles, each suspect asked each distinct image once for
all bundles together (:mod:`fpenc.batch_verify`), as tasks of an executor (``--executor local`` or
``ray``: :mod:`fpenc.executor`).

The driver alone writes the results file: one JSON line per (suspect, bundle), appended and fsynced
as each suspect finishes. A rerun with the same ``--out`` skips every (suspect, bundle) pair already
there (by the suspect as listed and the bundle's commitment); a last line cut by a kill is dropped
and its suspect judged again. Nothing heavy is imported here until the command runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from fpenc.errors import ConfigError
from fpenc.executor import add_executor_flags


def add_batch_flags(p) -> None:
    """``--suspects``, ``--out`` and the executor's flags, on ``fpenc verify``."""
    g = p.add_argument_group("batch verification (many suspect files, one or more --bundle)")
    g.add_argument(
        "--suspects",
        dest="suspects_from",
        metavar="DIR_OR_LIST",
        help="a folder of model files, or a text file with one model path per line (relative to the file's "
        "folder): judge each against every --bundle (repeatable), one JSON line per pair in --out",
    )
    g.add_argument(
        "--out",
        metavar="JSONL",
        help="the results of --suspects, appended as each suspect finishes; a rerun skips the pairs already there",
    )
    add_executor_flags(p)


def batch_suspects(spec: str) -> list[str]:
    """The suspect files of ``--suspects``: a folder's model files (sorted), or the lines of a list
    file (blank lines and ``#`` comments skipped; relative paths from the list's folder), each once."""
    from fpenc.calibration import SUSPECT_SUFFIXES

    where = Path(spec)
    if where.is_dir():
        paths = sorted(str(p) for p in where.iterdir() if p.is_file() and p.suffix.lower() in SUSPECT_SUFFIXES)
        if not paths:
            raise ConfigError(f"--suspects {spec}: no model files ({', '.join(SUSPECT_SUFFIXES)}) in this folder")
        return paths
    if not where.is_file():
        raise ConfigError(f"--suspects {spec} does not exist; give a folder of model files or a list file")
    if where.suffix.lower() in SUSPECT_SUFFIXES:
        raise ConfigError(
            f"--suspects {spec} is a model file; give a folder or a list file (or: fpenc verify -b B {spec})"
        )
    try:
        lines = where.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"--suspects {spec} is not a text list of model paths ({type(err).__name__})") from None
    names = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not names:
        raise ConfigError(f"--suspects {spec} lists no model file; write one path per line")
    paths = [
        n if n.startswith(("http://", "https://")) or Path(n).is_absolute() else str(where.parent / n) for n in names
    ]
    return list(dict.fromkeys(paths))


def read_results(out: Path) -> list[dict]:
    """The complete lines of a results file (none if it does not exist). Lines that are not JSON
    results (a line cut by a kill) are ignored; a file not ending in a newline is rewritten without
    its cut last line, so that appended lines start on their own."""
    if not out.is_file():
        return []
    text = out.read_text(encoding="utf-8", errors="replace")
    rows, raw = [], []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(row, dict)
            and isinstance(row.get("suspect"), str)
            and isinstance(row.get("bundle_commitment"), str)
        ):
            rows.append(row)
            raw.append(line)
    if text and not text.endswith("\n"):
        from fpenc.io import atomic_path

        with atomic_path(out) as tmp:
            tmp.write_text("".join(line + "\n" for line in raw), encoding="utf-8")
    return rows


def append_lines(out: Path, rows: list[dict]) -> None:
    """Append ``rows`` as JSON lines in one write, flushed and fsynced."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
        fh.flush()
        os.fsync(fh.fileno())


def _jobs(args) -> list:
    """One :class:`BundleJob` per distinct ``--bundle`` (its handle: the bundle itself), its settings
    checked before any suspect is asked."""
    from fpenc.batch_verify import BundleJob
    from fpenc.bundle import load_bundle
    from fpenc.verdict import DEFAULT_ALPHA
    from fpenc.verification import bundle_pvalue_floor, check_alpha, choose_pairs

    jobs, seen = [], set()
    for label in dict.fromkeys(args.bundle):
        bundle = load_bundle(label)
        if bundle.commitment in seen:
            raise ConfigError(f"--bundle {label} is the same bundle as an earlier --bundle; give it once")
        seen.add(bundle.commitment)
        if args.public_key:
            from fpenc.signing import verify_signature

            verify_signature(bundle, args.public_key, args.signature)
        meta, nf = bundle.meta, args.fingerprints
        if nf is not None and not 2 <= nf <= bundle.num_pairs:
            raise ConfigError(f"the number of fingerprints must be in [2, {bundle.num_pairs}] for {label}, got {nf}")
        alpha = args.alpha if args.alpha is not None else float(meta.get("alpha", DEFAULT_ALPHA))
        pairs = choose_pairs(bundle.num_uaps, bundle.num_views, nf, args.seed)
        check_alpha(alpha, bundle_pvalue_floor(bundle, (pairs[:, 0] * bundle.num_views + pairs[:, 1]).numpy()))
        api = args.api if args.api is not None else meta.get("api", "probs")
        jobs.append(BundleJob(str(label), bundle.sha256, bundle.commitment, [bundle], api, alpha, nf, args.seed))
    return jobs


def _done(out: Path, jobs: list, outputs: str) -> dict:
    """The lines of ``out`` already made for this batch's bundles, by (suspect, commitment); a line
    made with other settings (alpha, fingerprints, seed, API, outputs) is refused, never reused."""
    settings = {j.commitment: j.settings(outputs) for j in jobs}
    done = {}
    for r in read_results(out):
        mine = settings.get(r["bundle_commitment"])
        if mine is not None and r.get("settings") != mine:
            theirs = r.get("settings") or "not recorded"
            raise ConfigError(
                f"{out} holds a result for {r['suspect']} made with other settings ({theirs}) than this command's "
                f"({mine}): give another --out, or rerun with the settings of that file"
            )
        done[(r["suspect"], r["bundle_commitment"])] = r
    return done


def _show(row: dict, k: int, n: int) -> str:
    what = f"error: {row['error']}" if row["verdict"] == "error" else f"{row['verdict']:<14} p {row['p_value']:.3g}"
    return f"[{k}/{n}] {row['suspect']}  ({row['bundle']})  {what}"


def cmd_verify_batch(args, fail_on: list[str]) -> int:
    """Judge every suspect of ``--suspects`` against every ``--bundle``; the exit code of
    :func:`fpenc.verify_output.exit_code` over all pairs of the batch (2 if some are missing)."""
    import sys

    from fpenc.batch_verify import judge_file
    from fpenc.executor import executor_options, make_executor
    from fpenc.verify_output import exit_code

    if args.suspects or args.suspect:
        raise ConfigError("give the suspects either with --suspects DIR_OR_LIST or as files, not both")
    if not args.out:
        raise ConfigError("--suspects needs --out FILE: the results, one JSON line per (suspect, bundle)")
    if args.json or args.format != "text":
        raise ConfigError("--suspects writes JSON lines to --out; --format and --json are for suspects given as files")
    if args.signature and len(set(args.bundle)) > 1:
        raise ConfigError("--signature names one bundle's signature; with several --bundle each uses <bundle>.sig.json")
    paths = batch_suspects(args.suspects_from)
    out, options = Path(args.out), executor_options(args)
    if out.exists() and not out.is_file():
        raise ConfigError(f"--out {out} is not a file; name the results file, e.g. results.jsonl")
    t0 = time.perf_counter()
    jobs = _jobs(args)
    done = _done(out, jobs, args.outputs)
    todo = {p: [j for j in jobs if (p, j.commitment) not in done] for p in paths}
    todo = {p: js for p, js in todo.items() if js}
    ex, k, failed = (make_executor(options) if todo else None), 0, 0
    try:
        for job in jobs if todo else []:
            job.handle[0] = ex.put(job.handle[0])  # once per bundle; a worker resolves it once (fpenc.batch_verify)
        for path, js in todo.items():
            ex.submit(path, judge_file, path, js, args.outputs, args.trusted_suspect)
        while ex is not None and ex.pending:
            try:
                _, rows = ex.next_done()
            except Exception as err:  # noqa: BLE001 - a task that died (not a bad suspect: that is a line)
                failed += 1
                why = (str(err).strip().splitlines() or [""])[0][:200]
                which = getattr(err, "task_tag", "a suspect")
                print(
                    f"fpenc verify: {which}: its task failed ({type(err).__name__}: {why}); rerun to judge it",
                    file=sys.stderr,
                )
                continue
            append_lines(out, rows)
            k += 1
            for row in rows:
                done[(row["suspect"], row["bundle_commitment"])] = row
                print(_show(row, k, len(todo)), flush=True)
    finally:
        if ex is not None:
            ex.shutdown()
    seconds = time.perf_counter() - t0
    rows = [done[(p, j.commitment)] for p in paths for j in jobs if (p, j.commitment) in done]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    missing = len(paths) * len(jobs) - len(rows)
    print(
        f"{len(todo) - failed} suspects judged in {seconds:.1f} s ({len(paths) - len(todo)} already in {out}); "
        f"{len(rows)} (suspect, bundle) pairs: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())),
        flush=True,
    )
    if missing:
        print(
            f"fpenc verify: {missing} pairs have no result yet; rerun the same command to judge them", file=sys.stderr
        )
        return 2
    return exit_code(rows, fail_on)
