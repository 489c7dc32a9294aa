"""Build a zoo from a pipeline config: plan the models, train what is missing, write the manifest.

Models train as tasks of an executor (:mod:`fpenc.executor`: one after another in this process by
default, or on Ray); this driver alone writes files. Resumable at model granularity: each model's
weights are written atomically, then its manifest entry (also atomically). A rerun skips every model whose entry, spec and weights hash match, so
a run killed at any point (even SIGKILL) finishes without retraining finished models and never
leaves a truncated file behind. A piracy model is rebuilt when its victim changed.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from tqdm.auto import tqdm

from fpenc.config import PipelineConfig, to_dict
from fpenc.errors import WeightsFileError
from fpenc.executor import ExecutorOptions
from fpenc.io import load_weights, save_weights
from fpenc.rundir import SPLITS, RunDir
from fpenc.zoo.manifest import FORMAT, entries_by_id, format_table, load_manifest, save_manifest
from fpenc.zoo.plan import SPEC_DEFAULTS, ModelSpec, model_id, plan_zoo, recorded_as  # noqa: F401 (re-exported)
from fpenc.zoo.sets import assign_sets, reference_ids  # noqa: F401 (re-exported)
from fpenc.zoo.training import quiet_lightning


class ZooBuilder:
    """Trains the models of :func:`plan_zoo` that are not complete yet and records them.

    Each model is a task (:func:`fpenc.zoo.task.train_task`) handed to an executor
    (:mod:`fpenc.executor`: this process by default, or Ray); a model starts as soon as the model it
    is copied from (its ``parent``) is recorded. This driver alone writes weights files and the
    manifest, as each task finishes; the manifest lists models in plan order whatever the order
    they finished in. A model finished before the victim waits in memory for the victim's test
    probabilities (its ``agreement``), then is recorded.
    """

    def __init__(self, cfg: PipelineConfig, progress: bool = True, log=print, executor: ExecutorOptions | None = None):
        self.cfg = cfg
        self.run_dir = RunDir(cfg.run_dir)
        self.manifest_path = self.run_dir.manifest
        self.progress = progress
        self.log = log
        self.executor_options = executor or ExecutorOptions()

    # -- data ----------------------------------------------------------------------------------
    def _load_data(self):
        from fpenc.data.splits import load_splits, make_splits, read_indices, save_splits
        from fpenc.io import sha256_file
        from fpenc.zoo.task import load_arrays

        d = self.cfg.data
        arrays = load_arrays(self.cfg)
        meta = {
            "dataset": d.dataset,
            "n_train": int(len(arrays.train_y)),
            "seed": d.split_seed,
            "homologous_overlap": d.homologous_overlap,
        }
        victim = None
        if d.victim_indices is not None:  # the owner's declared subset (by content: a changed file re-splits)
            victim = read_indices(d.victim_indices, meta["n_train"])
            meta["victim_indices_sha256"] = sha256_file(d.victim_indices)
        path = self.run_dir.splits
        splits = None
        if path.exists():
            splits, saved_meta = load_splits(path)
            if saved_meta != meta:
                self.log(f"splits in {path} were made for {saved_meta}; recomputing for {meta}")
                splits = None
        if splits is None:
            splits = make_splits(meta["n_train"], d.split_seed, d.homologous_overlap, victim)
            save_splits(path, splits, meta)
        return arrays, splits

    def _is_complete(self, entry: dict | None, spec: ModelSpec, parent_sha: str | None) -> bool:
        if not recorded_as(entry, spec):
            return False
        try:
            load_weights(self.run_dir.weights(entry), expected_sha256=entry.get("sha256"))
        except WeightsFileError:
            return False
        return spec.parent is None or entry.get("parent_sha256") == parent_sha

    def _entry(self, spec: ModelSpec, result: dict, parent_sha: str | None, victim) -> dict:
        """Write one trained model's weights; its manifest entry. ``victim``: (probs, accuracy)."""
        from fpenc.zoo.evaluate import accuracy, agreement

        weights_rel = self.run_dir.model_weights(spec.id)
        sha = save_weights(
            self.run_dir / weights_rel, result["state"], result["arch"], model_id=spec.id, role=spec.role
        )
        probs, info = result["probs"], result["info"]
        acc = accuracy(probs, self.arrays.test_y)
        is_victim = spec.role == "victim"
        entry = {
            "id": spec.id,
            "role": spec.role,
            "architecture": spec.architecture,
            "optimizer": spec.optimizer,
            "seed": spec.seed,
            "batch_size": spec.batch_size,
            "epochs": spec.epochs,
            "split": spec.split,
            "parent": spec.parent,
            "test_accuracy": round(acc, 4),
            "agreement": 1.0 if is_victim else round(agreement(probs, victim[0]), 4),
            "recovery_rate": round(acc / victim[1], 4) if spec.role == "piracy" else None,
            "queries": info.get("queries"),
            "train_seconds": info["train_seconds"],
            "weights": weights_rel,
            "sha256": sha,
            "parent_sha256": parent_sha,
            "spec": asdict(spec),
        }
        tqdm.write(f"[done] {spec.id}: test acc {acc:.4f} in {info['train_seconds']:.1f}s", file=sys.stderr)
        if acc < 1.5 / self.arrays.num_classes:
            tqdm.write(
                f"warning: {spec.id} did not learn (test acc {acc:.4f}, chance "
                f"{1 / self.arrays.num_classes:.2f}); try another lr or optimizer for it",
                file=sys.stderr,
            )
        return entry

    # -- the zoo -------------------------------------------------------------------------------
    def build(self) -> dict:
        from fpenc.executor import make_executor
        from fpenc.zoo.evaluate import accuracy, predict_probs
        from fpenc.zoo.task import train_task

        quiet_lightning()
        specs = plan_zoo(self.cfg)
        sets = assign_sets(self.cfg, complete=False)  # the split policy, decided before anything trains
        for stale in self.run_dir.path.rglob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink()
        self.arrays, splits = self._load_data()
        try:
            old = entries_by_id(load_manifest(self.manifest_path))
        except WeightsFileError as err:
            self.log(f"warning: {err}; starting a new manifest")
            old = {}
        manifest = {
            "format": FORMAT,
            "name": self.cfg.name,
            "dataset": self.arrays.name,
            "data_source": self.arrays.source,
            "input_shape": list(self.arrays.input_shape),
            "num_classes": self.arrays.num_classes,
            "splits": SPLITS,
            "config": to_dict(self.cfg),
            "models": [],
        }
        built: dict[str, dict] = {}  # id -> recorded entry (parents of later copies)
        handles: dict[str, object] = {}  # id -> the executor's handle of a parent's loaded net
        victim: list = []  # [(test probs, accuracy)] once the victim is recorded
        held: list = []  # (spec, result, parent_sha) trained before the victim was recorded
        waiting = list(specs)
        executor = make_executor(self.executor_options)
        local = executor.name == "local"
        splits_handle = executor.put(splits)
        bar = tqdm(total=len(specs), desc="zoo", unit="model", disable=not self.progress, dynamic_ncols=True)

        def record(spec: ModelSpec, entry: dict, net=None) -> None:
            if spec.role == "victim":
                net = net if net is not None else self.run_dir.load_model(entry)
                probs = predict_probs(net, self.arrays.test_x)
                victim.append((probs, accuracy(probs, self.arrays.test_y)))
            built[spec.id] = {**entry, "set": sets[spec.id]}  # set: not part of the spec (changing it retrains nothing)
            manifest["models"] = [built[s.id] for s in specs if s.id in built]
            save_manifest(self.manifest_path, manifest)  # after every model: resumable at any point
            bar.update(1)

        def parent_sha_of(spec: ModelSpec) -> str | None:
            return None if spec.parent is None else built[spec.parent]["sha256"]

        def schedule() -> None:  # start (or skip) every waiting model whose parent is recorded
            progressed = True
            while progressed:
                progressed = False
                for spec in [s for s in waiting if s.parent is None or s.parent in built]:
                    waiting.remove(spec)
                    entry, parent_sha = old.get(spec.id), parent_sha_of(spec)
                    if self._is_complete(entry, spec, parent_sha):
                        self.log(f"[skip] {spec.id}: complete (test acc {entry['test_accuracy']:.4f})")
                        record(spec, entry)
                        progressed = True
                        continue
                    if spec.parent is not None and spec.parent not in handles:
                        handles[spec.parent] = executor.put(self.run_dir.load_model(built[spec.parent]))
                    parent = handles.get(spec.parent) if spec.parent is not None else None
                    executor.submit(spec.id, train_task, self.cfg, spec, splits_handle, parent, self.progress and local)

        by_id = {s.id: s for s in specs}
        try:
            schedule()
            while executor.pending:
                spec_id, result = executor.next_done()
                spec = by_id[spec_id]
                bar.set_postfix_str(spec_id)
                held.append((spec, result, parent_sha_of(spec)))
                for item in [h for h in held if victim or h[0].role == "victim"]:
                    held.remove(item)
                    record(item[0], self._entry(*item, victim[0] if victim else None))
                schedule()
        finally:
            executor.shutdown()
            bar.close()
        if waiting:  # a parent that is not in the plan (plan_zoo checks this; kept as a guard)
            raise RuntimeError(f"zoo models never started, their parent missing: {[s.id for s in waiting]}")
        return manifest


def build_zoo(cfg: PipelineConfig, progress: bool = True, executor: ExecutorOptions | None = None) -> dict:
    """Build (or finish) the zoo of ``cfg`` and return its manifest; ``executor``: where its models
    train (default: this process, one after another)."""
    from fpenc.io import lock_run_dir

    lock_run_dir(cfg.run_dir)
    manifest = ZooBuilder(cfg, progress=progress, executor=executor).build()
    return manifest


__all__ = ["ModelSpec", "plan_zoo", "build_zoo", "ZooBuilder", "format_table"]
