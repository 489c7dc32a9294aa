"""Fingerprints of a suspect (paper eq. 6): for a UAP ``v`` and a view set ``X = (x_1..x_N)``,

    F(M, v, X) = [M(x_1), M(x_1 + v), ..., M(x_N), M(x_N + v)]      (length 2 N K)

with ``x + v`` clamped to [0, 1] and ``M(.)`` what the suspect's API returns.
"""

from __future__ import annotations

import torch

from fpenc.errors import FpencError


def query_images(suspect, images: torch.Tensor, batch_size: int, input_shape, dataset: str) -> torch.Tensor:
    """The suspect's answers ``[B, K]`` on float images ``[B, C, H, W]``, in batches of ``batch_size``;
    a suspect that fails on them is a one-line :class:`FpencError` (out of memory, or the model's own
    error with the expected input contract)."""
    out = []
    for i in range(0, len(images), batch_size):
        try:
            out.append(suspect(images[i : i + batch_size]))
        except FpencError:
            raise
        except Exception as err:  # the model itself failed on these images
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()] or [type(err).__name__]
            why = (" ".join(lines) if len(lines) <= 4 else lines[-1])[:240]  # TorchScript: traceback, then the cause
            why = why if why.split(":")[0].endswith("Error") else f"{type(err).__name__}: {why}"
            shape = "x".join(map(str, input_shape))
            if isinstance(err, MemoryError) or "alloc" in why.lower() or "out of memory" in why.lower():
                raise FpencError(
                    f"the suspect ran out of memory answering {len(images[i : i + batch_size])} images ({why})"
                ) from err
            raise FpencError(
                f"the suspect failed on {shape} (CxHxW) images of the victim's dataset ({dataset}): "
                f"{why}; is it a model of the same task, taking [B, {', '.join(map(str, input_shape))}] "
                "images in [0, 1]?"
            ) from err
    return torch.cat(out)


def pair_fingerprints(
    suspect,
    uaps: torch.Tensor,
    view_images: torch.Tensor,
    pairs: torch.Tensor,
    batch_size: int = 2000,
    dataset: str = "unknown",
) -> torch.Tensor:
    """Fingerprints ``[F, 2*N*K]`` of ``suspect`` for ``pairs [F, 2]`` of (UAP index, view index).

    ``uaps [U, C, H, W]`` float, ``view_images [V, N, C, H, W]`` uint8. Row f equals
    ``fingerprints(suspect, uaps, view_images)[u_f, v_f]``: ``[M(x_1), M(x_1+v), ..., M(x_N), M(x_N+v)]``.
    Queries ``V_chosen * N + F * N`` images (the clean views of the distinct chosen views, then
    ``clamp(x + uap, 0, 1)`` for each pair), in batches of ``batch_size``.
    """
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must be [F, 2], got {tuple(pairs.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n, chw = view_images.shape[1], view_images.shape[2:]
    chosen_views, row = torch.unique(pairs[:, 1], sorted=True, return_inverse=True)  # row: pair -> clean view row
    x = view_images[chosen_views]  # only the chosen views
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    uaps = uaps.float()

    def query(images: torch.Tensor) -> torch.Tensor:
        return query_images(suspect, images, batch_size, tuple(chw), dataset)

    clean_out = query(x.reshape(-1, *chw))  # [Vc*N, K]
    k = clean_out.shape[1]
    step = max(1, batch_size // n)  # pairs per query batch: perturbed images are made batch by batch
    adv_out = torch.cat(
        [
            query((x[row[i : i + step]] + uaps[pairs[i : i + step, 0]].unsqueeze(1)).clamp(0, 1).reshape(-1, *chw))
            for i in range(0, len(pairs), step)
        ]
    ).reshape(len(pairs), n, k)  # [F, N, K]
    clean_out = clean_out.reshape(len(chosen_views), n, k)[row]  # [F, N, K]
    return torch.stack([clean_out, adv_out], dim=2).reshape(len(pairs), 2 * n * k)


def fingerprints(
    suspect, uaps: torch.Tensor, view_images: torch.Tensor, batch_size: int = 2000, dataset: str = "unknown"
) -> torch.Tensor:
    """Fingerprints ``[U, V, 2*N*K]`` of ``suspect`` (images -> probabilities ``[B, K]``) for every
    (UAP, view) pair: :func:`pair_fingerprints` over all of them.

    The clean outputs are queried once and shared by all UAPs: ``V*N*(1+U)`` queries in total.
    """
    u, v = len(uaps), view_images.shape[0]
    pairs = torch.stack(torch.meshgrid(torch.arange(u), torch.arange(v), indexing="ij"), -1).reshape(-1, 2)
    return pair_fingerprints(suspect, uaps, view_images, pairs, batch_size, dataset).reshape(u, v, -1)
