"""Model extraction: a piracy model trained on the victim's API answers (paper Def. 2, §5.1).

The attacker owns an unlabeled pool (the ``attacker`` split; its true labels are never read),
queries the frozen victim through an API (probabilities, top-k or label only) and fits its
student to the answers. Optionally, CloudLeak-style (Yu et al., NDSS 2020), it also queries
adversarial examples crafted on its current student around the pool, which land near the
decision boundary and carry more information per query.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from fpenc.api import ApiSpec, apply_api, parse_api
from fpenc.zoo.optim import cosine_schedule, make_optimizer


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k t_k log softmax(logits)_k``; ``[B, K]`` each.

    ``target`` rows are renormalised to sum to 1 (top-k answers sum to less).
    """
    target = target / target.sum(1, keepdim=True).clamp_min(1e-12)
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def _grown(t: torch.Tensor, size: int) -> torch.Tensor:
    """``t`` with its first dimension zero-padded to ``size``."""
    out = t.new_zeros(size, *t.shape[1:])
    out[: len(t)] = t
    return out


class ExtractionModule(pl.LightningModule):
    """Trains ``student`` on ``victim``'s answers; counts the distinct queries it spends.

    Args:
        student: the piracy network being trained.
        victim: the victim network (frozen, eval mode); only its API answers are used.
        api: what the victim's API returns ("probs", "topk:K", "label").
        adversarial_queries: budget of extra adversarial queries, spread over epochs 2..E.
        adversarial_eps: L-inf size of the FGSM step that crafts them, in pixel space.
    """

    def __init__(
        self,
        student: torch.nn.Module,
        victim: torch.nn.Module,
        api: str | ApiSpec = "probs",
        optimizer: str = "adam",
        lr: float | None = None,
        weight_decay: float = 0.0,
        adversarial_queries: int = 0,
        adversarial_eps: float = 0.1,
    ):
        super().__init__()
        if adversarial_queries < 0 or adversarial_eps < 0:
            raise ValueError("adversarial_queries and adversarial_eps must be >= 0")
        self.student = student
        self.victim = victim.eval().requires_grad_(False)
        self.api = parse_api(api)
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.adversarial_queries = adversarial_queries
        self.adversarial_eps = adversarial_eps
        self._answers: torch.Tensor | None = None  # [pool size, K]: the victim's answer per pool index
        self._answered: torch.Tensor | None = None  # [pool size] bool: which pool images were queried
        self._bank_x: torch.Tensor | None = None  # [adversarial_queries, C, H, W]: crafted queries
        self._bank_t: torch.Tensor | None = None  # [adversarial_queries, K]: the victim's answers to them
        self.adv_used = 0

    @property
    def queries(self) -> int:
        """Distinct queries sent to the victim: pool images (each answered once) + adversarial ones."""
        pool = 0 if self._answered is None else int(self._answered.sum())
        return pool + self.adv_used

    def train(self, mode: bool = True):
        super().train(mode)
        self.victim.eval()  # the victim is a served model: never in training mode
        return self

    @torch.no_grad()
    def query(self, x: torch.Tensor) -> torch.Tensor:
        """The victim's API answer for images ``[B, C, H, W]`` -> ``[B, K]``."""
        return apply_api(F.softmax(self.victim(x), dim=1), self.api)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def _craft_adversarial(self, x: torch.Tensor) -> torch.Tensor:
        """FGSM away from the student's own prediction: points near its decision boundary."""
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = self.student(x)
            loss = F.cross_entropy(logits, logits.argmax(1))
            (grad,) = torch.autograd.grad(loss, x)
        return (x + self.adversarial_eps * grad.sign()).clamp(0, 1).detach()

    def _pool_answers(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The victim's answers for pool images ``x`` (indices ``idx``): queried once, then cached.

        An attacker pays for each pool image once and trains on the stored answers every epoch.
        """
        top = int(idx.max()) + 1  # indices into the train set
        if self._answered is None:
            self._answered = torch.zeros(top, dtype=torch.bool, device=x.device)
        elif top > len(self._answered):  # (after the first batch, whose answers all exist)
            self._answered, self._answers = _grown(self._answered, top), _grown(self._answers, top)
        new = ~self._answered[idx]
        if new.any():
            got = self.query(x[new])
            if self._answers is None:
                self._answers = got.new_zeros(len(self._answered), got.shape[1])
            self._answers[idx[new]] = got
            self._answered[idx[new]] = True
        return self._answers[idx]

    def _store_adversarial(self, x_adv: torch.Tensor, answers: torch.Tensor) -> None:
        if self._bank_x is None:
            self._bank_x = torch.empty(self.adversarial_queries, *x_adv.shape[1:], device=x_adv.device)
            self._bank_t = torch.empty(self.adversarial_queries, answers.shape[1], device=x_adv.device)
        n = len(x_adv)
        self._bank_x[self.adv_used : self.adv_used + n] = x_adv
        self._bank_t[self.adv_used : self.adv_used + n] = answers
        self.adv_used += n

    def training_step(self, batch, batch_idx):
        x, idx = batch[0], batch[2]
        loss = soft_cross_entropy(self.student(x), self._pool_answers(x, idx))
        remaining = self.adversarial_queries - self.adv_used
        if remaining > 0 and self.current_epoch >= 1:
            steps_left = max(1, self.trainer.estimated_stepping_batches - self.global_step)
            n = min(len(x), remaining, math.ceil(remaining / steps_left))
            x_adv = self._craft_adversarial(x[:n])
            self._store_adversarial(x_adv, self.query(x_adv))
        if self.adv_used:
            pick = torch.randint(self.adv_used, (min(len(x), self.adv_used),), device=x.device)
            loss = loss + soft_cross_entropy(self.student(self._bank_x[pick]), self._bank_t[pick])
        if self.trainer.loggers:  # (the zoo trains without one: logging every step would cost ~6% for nothing)
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self):
        opt = make_optimizer(self.optimizer_name, self.student.parameters(), self.lr, self.weight_decay)
        return {"optimizer": opt, "lr_scheduler": cosine_schedule(opt, self.trainer.estimated_stepping_batches)}
