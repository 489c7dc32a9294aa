"""A bundle's commitment and its optional Ed25519 signature: proof that a claim was fixed before a dispute.

**Commitment**: SHA-256 over a domain tag and the canonical JSON (sorted keys, no whitespace, no
NaN) of the bundle's whole header: every header value (meta: alpha, api, gates, reference models,
victim id, ...; the encoder config; versions; creation time) and every part's SHA-256, shape and
dtype. :func:`fpenc.bundle.load_bundle` checks each part against its recorded SHA-256, so the
commitment covers every tensor and every header value. Anyone can recompute it: publish it (or
sign it) when the bundle is made, and a later copy with any change no longer matches.

**Signature** (``fpenc sign``): ``<bundle>.sig.json`` holds the commitment, an Ed25519 signature
of it, the signer's public key and a copy of the signed header; ``fpenc verify --public-key``
checks the signature with the key the verifier already trusts (never the one in the file) and,
when the bundle no longer matches, names the header fields that changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from fpenc.errors import FpencError

SIG_FORMAT = "fpenc-signature/1"
DOMAIN = b"fpenc-bundle-commitment/1\0"


class SignatureError(FpencError):
    """A signature file is missing or damaged, or does not verify with the given key."""


def canonical(obj) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, ASCII, no NaN/inf."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    except ValueError as err:
        raise ValueError(f"cannot commit to a header with non-finite numbers: {err}") from err


def commitment(header: dict) -> str:
    """The hex SHA-256 commitment of a bundle header (see the module docstring)."""
    return hashlib.sha256(DOMAIN + canonical(header)).hexdigest()


def changed_fields(signed, current, prefix: str = "") -> list[str]:
    """Dotted paths of the values that differ between two JSON-like trees."""
    if isinstance(signed, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(signed) | set(current)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in signed or key not in current:
                out.append(path)
            else:
                out += changed_fields(signed[key], current[key], path)
        return out
    return [] if canonical(signed) == canonical(current) else [prefix or "(root)"]


def signature_path(bundle_path) -> Path:
    return Path(f"{bundle_path}.sig.json")


def generate_keypair(stem) -> tuple[Path, Path]:
    """Write ``<stem>.key`` (Ed25519 private key, PEM, mode 0600) and ``<stem>.pub`` (public key, PEM)."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = Path(f"{stem}.key"), Path(f"{stem}.pub")
    for path in (private, public):
        if path.exists():
            raise FpencError(f"{path} exists; choose another name (fpenc never overwrites a key)")
    private.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def load_key(path, private: bool):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    path = Path(path)
    if not path.is_file():
        raise SignatureError(f"key file {path} does not exist; make a key pair with `fpenc keygen`")
    try:
        raw = path.read_bytes()
        key = (
            serialization.load_pem_private_key(raw, password=None)
            if private
            else serialization.load_pem_public_key(raw)
        )
    except (ValueError, TypeError) as err:
        raise SignatureError(f"{path} is not a PEM {'private' if private else 'public'} key ({err})") from err
    want = Ed25519PrivateKey if private else Ed25519PublicKey
    if not isinstance(key, want):
        raise SignatureError(f"{path} is not an Ed25519 key; make one with `fpenc keygen`")
    return key


def _raw_public(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key) -> str:
    """A short fingerprint of an Ed25519 public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def sign_bundle(bundle, private_key_path, out=None) -> Path:
    """Sign ``bundle``'s commitment; writes ``<bundle>.sig.json`` (or ``out``) atomically."""
    from fpenc.io import write_json

    key = load_key(private_key_path, private=True)
    c = bundle.commitment
    record = {
        "format": SIG_FORMAT,
        "commitment": c,
        "algorithm": "ed25519",
        "signature": base64.b64encode(key.sign(bytes.fromhex(c))).decode(),
        "public_key": base64.b64encode(_raw_public(key.public_key())).decode(),
        "key_id": key_id(key.public_key()),
        "bundle_sha256": bundle.sha256,
        "header": bundle.metadata,
    }
    out = Path(out) if out else signature_path(bundle.path)
    write_json(out, record)
    return out


def verify_signature(bundle, public_key_path, signature_file=None) -> dict:
    """Check ``bundle`` against its signature with the trusted public key. Returns ``{key_id,
    commitment}``; raises :class:`SignatureError` naming what is wrong (another key, a changed
    header field or tensor, a damaged signature file)."""
    from cryptography.exceptions import InvalidSignature

    key = load_key(public_key_path, private=False)
    path = Path(signature_file) if signature_file else signature_path(bundle.path)
    if not path.is_file():
        raise SignatureError(f"no signature file {path}: sign the bundle with `fpenc sign`, or pass --signature")
    try:
        record = json.loads(path.read_text())
        sig = base64.b64decode(record["signature"], validate=True)
        signed_commitment, signed_header = str(record["commitment"]), record["header"]
        if record.get("format") != SIG_FORMAT:
            raise KeyError("format")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SignatureError(f"signature file {path} is damaged ({type(err).__name__}: {err})") from err
    try:
        key.verify(sig, bytes.fromhex(signed_commitment))
    except (InvalidSignature, ValueError):
        raise SignatureError(
            f"the signature in {path} was not made with the key {public_key_path} (key id "
            f"{key_id(key)}; the file names {record.get('key_id', '?')}): the claim is not this "
            "key holder's"
        ) from None
    if commitment(signed_header) != signed_commitment:
        raise SignatureError(f"signature file {path} is damaged: its header copy does not match its signed commitment")
    if bundle.commitment != signed_commitment:
        changed = changed_fields(signed_header, bundle.metadata)
        raise SignatureError(
            f"bundle {bundle.path} was changed after it was signed: {', '.join(changed[:8]) or 'header'}"
            f"{' ...' if len(changed) > 8 else ''} differ from the signed bundle"
        )
    return {"key_id": key_id(key), "commitment": signed_commitment}
