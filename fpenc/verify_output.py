"""What ``fpenc verify`` prints for one or several suspects, and the exit code scripts read.

Three formats: ``text`` (for people: the raw numbers beside the verdict and its reasons), ``json``
(one document of schema :data:`SCHEMA`, described by ``fpenc/schemas/verify.schema.json``) and
``csv`` (one row per suspect, the columns of :data:`CSV_COLUMNS`). A suspect that could not be
judged (a bad file) is a row with ``verdict: error`` and its message; the others are still judged.

Exit codes: without ``fail_on``, one suspect gives its verdict's code (``derived`` 10, ``not shown``
0, ``not assessable`` 11); several give the highest of them. With ``fail_on`` (verdicts), 1 when
any suspect's verdict is one of them, else 0. An error (bad input) is 2 either way.
"""

from __future__ import annotations

import csv
import io
import json

from fpenc.verdict import EXIT_CODES, OUTCOMES

SCHEMA = "fpenc-verify/1"
"""The ``schema`` value of ``fpenc verify --format json``; changes when a field changes meaning."""
ERROR = "error"
EXIT_FAIL_ON, EXIT_ERROR = 1, 2
CSV_COLUMNS = (
    "suspect",
    "verdict",
    "p_value",
    "alpha",
    "agreement",
    "similarity",
    "margin",
    "accuracy",
    "queries",
    "reasons",
)


def error_row(suspect: str, message: str) -> dict:
    """The result of a suspect that could not be judged."""
    return {"suspect": suspect, "verdict": ERROR, "error": message, "reasons": [message]}


def exit_code(results: list[dict], fail_on: list[str] | None = None) -> int:
    """The process exit code for ``results`` (see the module docstring)."""
    verdicts = [r["verdict"] for r in results]
    if ERROR in verdicts:
        return EXIT_ERROR
    if fail_on:
        return EXIT_FAIL_ON if any(v in fail_on for v in verdicts) else 0
    return max(EXIT_CODES[v] for v in verdicts)


def check_fail_on(values: list[str] | None) -> list[str]:
    """``--fail-on`` values (comma-separated or repeated) checked against the outcomes."""
    from fpenc.errors import ConfigError

    out = [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]
    unknown = [v for v in out if v not in OUTCOMES]
    if unknown:
        raise ConfigError(f"--fail-on takes verdicts ({', '.join(OUTCOMES)}), got {', '.join(unknown)}")
    return out


def to_json(header: dict, results: list[dict]) -> str:
    """One JSON document: the bundle's ``header`` fields and every suspect's result."""
    return json.dumps({"schema": SCHEMA, **header, "results": results})


def to_csv(results: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in results:
        row = {**r, "accuracy": r.get("sanity", {}).get("accuracy"), "reasons": "; ".join(r.get("reasons", []))}
        w.writerow(["" if row.get(c) is None else _cell(row[c]) for c in CSV_COLUMNS])
    return buf.getvalue().rstrip("\n")


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def to_text(header: dict, r: dict) -> str:
    """The report of one suspect for people."""
    lines = [
        f"bundle:      {header['bundle']} (victim {header.get('victim') or '?'}, dataset {header.get('dataset') or '?'})",
        f"commitment:  {header['bundle_commitment']}"
        + (f" (signed by key {header['signature']['key_id']})" if header.get("signature") else " (unsigned)"),
        f"suspect:     {r['suspect']}" + (f" (api {r['api']})" if "api" in r else ""),
    ]
    if r["verdict"] == ERROR:
        return "\n".join([*lines, f"verdict:     error: {r['error']}"])
    s, g = r["sanity"], r["gates"]
    ood = "" if g["ood_threshold"] is None else f" (limit {g['ood_threshold']:.3f})"
    lo_a, hi_a = r["reference_agreement_range"]
    lo_s, hi_s = r["reference_similarity_range"]
    flips = r["margin_answers"]
    answers = "" if flips is None else f", {flips:+d} distinct answer{'' if abs(flips) == 1 else 's'} to flip it"
    lines += [
        f"sanity:      accuracy {s['accuracy']:.3f} on {s['labelled_images']} labelled images (min "
        f"{g['min_accuracy']:.3f}), label entropy {s['label_entropy']:.3f} (min {g['min_label_entropy']:.3f})",
        f"agreement:   {r['agreement']:.4f} of the key's labels are the victim's (reference models "
        f"{lo_a:.3f}-{hi_a:.3f}, p {r['p_agreement']:.3g})",
        f"similarity:  {r['similarity']:.4f} encoder similarity on {r['num_fingerprints']} fingerprint pairs "
        f"(reference {lo_s:.3f}-{hi_s:.3f}, p {r['p_similarity']:.3g})",
        f"distance:    {r['ood_distance']:.4f} to the nearest encoder-training model{ood}",
        f"p-value:     {r['p_value']:.3g} (test of the {r['statistic']} against the reference models; alpha "
        f"{r['alpha']:g}; this bundle's floor {r['p_value_floor']:.3g})",
        f"margin:      {_margin(r, answers)}"
        + ("; a near tie: a few answers would flip the test" if r["near_tie"] else ""),
        f"verdict:     {r['verdict']}",
        *[f"  because:   {reason}" for reason in r["reasons"]],
        f"queries:     {r['queries']} images ({r['seconds']:.2f} s)",
    ]
    return "\n".join(lines)


def _margin(r: dict, answers: str) -> str:
    """The margin line: above the threshold(s) of the bundle's statistic (``agreement``: the agreement
    at which p = alpha; the two-statistic tests: both thresholds, at each test's own level)."""
    a = f"{r['agreement_threshold']:.4f}{answers}"
    if r.get("statistic", "agreement") == "agreement":
        side = "above" if r["margin"] >= 0 else "below"
        return f"{r['margin']:+.4f}: {side} the agreement at which p = alpha ({a})"
    which = "smaller" if r["statistic"] == "agreement+similarity" else "larger counted"
    uncounted = r["statistic"] == "agreement-or-similarity" and r["p_agreement"] >= 0.5
    return (
        f"{r['margin']:+.4f}, the {which} of agreement {r['agreement'] - r['agreement_threshold']:+.4f} (threshold "
        f"{a}) and similarity {r['similarity'] - r['similarity_threshold']:+.4f} (threshold "
        f"{r['similarity_threshold']:.4f}"
        + ("; not counted: the agreement is not above the reference mean)" if uncounted else ")")
    )


def render(fmt: str, header: dict, results: list[dict]) -> str:
    """All of ``results`` in ``fmt`` (text, json or csv)."""
    if fmt == "json":
        return to_json(header, results)
    if fmt == "csv":
        return to_csv(results)
    return "\n\n".join(to_text(header, r) for r in results)
