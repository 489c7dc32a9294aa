"""LightningModules whose only parameter is a universal perturbation ``v`` of a frozen victim.

* :class:`SGDUAPModule` — SGD-UAP (Shafahi et al., "Universal adversarial training", AAAI 2020):
  ascend the victim's (clipped) cross-entropy on ``clamp(x + v)`` over mini-batches, then project
  ``v`` onto the epsilon ball after every step.
* :class:`DeepFoolUAPModule` — the UAP algorithm of Moosavi-Dezfooli et al. (CVPR 2017) that the
  paper cites, batched: the DeepFool perturbations of ``x + v`` for the images of a batch that
  ``v`` does not fool yet are added to ``v``, projecting after each batch.

Both log the fooling rate on held-out images: the share whose predicted class changes.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from fpenc.models.classifier import module_device
from fpenc.uap.deepfool import deepfool
from fpenc.uap.loss import uap_ascent_loss
from fpenc.uap.projection import check_norm, project


class _UAPBase(pl.LightningModule):
    def __init__(
        self, victim: torch.nn.Module, input_shape: tuple[int, int, int], eps: float, norm: str, seed: int = 0
    ):
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.victim = victim.eval().requires_grad_(False)
        self.eps, self.norm = float(eps), check_norm(norm)
        g = torch.Generator().manual_seed(seed)
        init = (torch.rand((1, *input_shape), generator=g) * 2 - 1) * 1e-3  # seeded: bank members differ
        self.v = torch.nn.Parameter(project(init, self.eps, self.norm))

    def train(self, mode: bool = True):
        super().train(mode)
        self.victim.eval()
        return self

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """``clamp(x + v, 0, 1)`` for images ``[B, C, H, W]`` in [0, 1]."""
        return (x + self.v).clamp(0, 1)

    @torch.no_grad()
    def fooled(self, x: torch.Tensor) -> torch.Tensor:
        """Bool ``[B]``: the victim's class of ``x + v`` differs from its class of ``x``."""
        return self.victim(self.perturb(x)).argmax(1) != self.victim(x).argmax(1)

    def validation_step(self, batch, batch_idx):
        self.log("val/fooling_rate", self.fooled(batch[0]).float().mean(), prog_bar=True, on_epoch=True)

    def perturbation(self) -> torch.Tensor:
        """The UAP, ``[C, H, W]``, on CPU."""
        return self.v.detach()[0].cpu()


class SGDUAPModule(_UAPBase):
    """SGD-UAP. ``loss_clip`` caps each image's cross-entropy (Shafahi et al.'s clipped loss) so
    already-fooled images stop dominating the gradient."""

    def __init__(
        self,
        victim,
        input_shape,
        eps: float = 0.3,
        norm: str = "linf",
        lr: float = 0.01,
        loss_clip: float = 10.0,
        seed: int = 0,
    ):
        super().__init__(victim, input_shape, eps, norm, seed)
        self.lr, self.loss_clip = lr, loss_clip

    def training_step(self, batch, batch_idx):
        x = batch[0]
        loss = uap_ascent_loss(self.victim, x, self.perturb(x), self.loss_clip)
        self.log("train/uap_loss", loss.mean(), prog_bar=True)
        return -loss.mean()  # ascend the victim's loss

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        with torch.no_grad():  # project right after every step: v never leaves the ball
            self.v.copy_(project(self.v, self.eps, self.norm))

    def configure_optimizers(self):
        # Adam normalises the step per pixel: one learning rate works across eps, norms and models
        return torch.optim.Adam([self.v], lr=self.lr)


class DeepFoolUAPModule(_UAPBase):
    """Moosavi-Dezfooli et al. (2017) UAP, batched, with manual optimisation.

    Each step adds the DeepFool perturbations ``r_i`` of ``x_i + v`` for the ``n`` images of the
    batch that ``v`` does not fool yet, all computed at the same ``v``, as one update
    ``v <- P(v + sum_i r_i / n ** step_exponent)``. ``step_exponent = 0`` is the original
    algorithm's additive update (each ``r_i`` added in full, then projected); larger exponents damp
    the step (0.5: ``1 / sqrt(n)``).

    The original algorithm stops once ``v`` fools ``1 - delta`` of the data ``X`` it is computed
    on; here every iterate is scored on ``selection`` (images of that same data, ``[S, C, H, W]``
    uint8 or [0, 1] float: :func:`fpenc.uap.bank.selection_images`) and :meth:`perturbation` returns
    the best-scored one. Without ``selection`` each iterate is scored on the next batch, before it
    updates ``v``: a noisier choice. The full additive step makes the iterates wander, and scoring
    on a fixed set is what turns the wandering into a search: on the demo victim (L-inf 0.25, 100
    steps of 256, 1,024 selection images) five seeds fool 0.82-0.84 of the held-out images against
    0.795 for the 1/sqrt(n) step scored on the next batch (``benchmarks/uap_methods.py``,
    docs/results.md; both choices were made on test images outside the benchmark's held-out ones).

    The update is applied through a plain SGD step of learning rate 1 on the gradient
    ``v - v_new``: Lightning counts a step only when an optimiser steps, so without one
    ``global_step`` would never advance and a ``max_steps`` bound would never end training.
    """

    def __init__(
        self,
        victim,
        input_shape,
        eps: float = 7.0,
        norm: str = "l2",
        overshoot: float = 0.02,
        max_iter: int = 20,
        num_candidates: int = 10,
        step_exponent: float = 0.0,
        selection: torch.Tensor | None = None,
        seed: int = 0,
    ):
        super().__init__(victim, input_shape, eps, norm, seed)
        if step_exponent < 0:
            raise ValueError(f"step_exponent must be >= 0, got {step_exponent}")
        self.automatic_optimization = False
        self.overshoot, self.max_iter, self.num_candidates = overshoot, max_iter, num_candidates
        self.step_exponent = float(step_exponent)
        if selection is not None:
            selection = selection.float() / 255.0 if selection.dtype == torch.uint8 else selection.float()
            selection = selection.to(module_device(self.victim))
            with torch.no_grad():
                self.register_buffer("selection_labels", self.victim(selection).argmax(1), persistent=False)
        self.register_buffer("selection", selection, persistent=False)
        self.best_v: torch.Tensor | None = None
        self.best_rate = -1.0

    def _consider(self, x: torch.Tensor) -> None:
        """Score the current ``v`` (on the selection images, else on ``x``) and keep it if best."""
        with torch.no_grad():
            if self.selection is None:
                rate = float(self.fooled(x).float().mean())
            else:
                rate = float(
                    (self.victim(self.perturb(self.selection)).argmax(1) != self.selection_labels).float().mean()
                )
        if rate > self.best_rate:
            self.best_rate, self.best_v = rate, self.v.detach().clone()

    def updated(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v_new [1, C, H, W], todo [B])``: ``v`` after one update on the images ``x``, and
        which of them ``v`` did not fool yet."""
        todo = ~self.fooled(x)
        v = self.v.detach().clone()
        if todo.any():
            r = deepfool(
                self.victim, self.perturb(x[todo]), self.num_candidates, self.overshoot, self.max_iter, self.norm
            )
            with torch.no_grad():
                v = project(v + r.sum(0, keepdim=True) / float(len(r)) ** self.step_exponent, self.eps, self.norm)
        return v, todo

    def training_step(self, batch, batch_idx):
        self._consider(batch[0])  # the current v, on images it was not computed on
        v_new, todo = self.updated(batch[0])
        opt = self.optimizers()
        opt.zero_grad()
        self.v.grad = (self.v.detach() - v_new).contiguous()  # SGD at lr 1: v - grad = v_new
        opt.step()  # counts the step (global_step), like any optimiser step
        with torch.no_grad():
            self.v.copy_(v_new)  # exactly v_new, without the subtraction's rounding
        self.log("train/not_fooled", todo.float().mean(), prog_bar=True)

    def on_train_end(self) -> None:
        if self.selection is not None:  # the last update is scored too
            self._consider(self.selection)

    def perturbation(self) -> torch.Tensor:
        """The best-scored ``v`` (``[C, H, W]``, CPU)."""
        if self.best_v is None or self.best_rate <= 0:
            return super().perturbation()
        return self.best_v[0].cpu()

    def configure_optimizers(self):
        return torch.optim.SGD([self.v], lr=1.0)
