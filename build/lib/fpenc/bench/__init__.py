"""The benchmark: every ownership test of :mod:`fpenc.baselines` on a zoo's sealed test models, at
query budgets, calibrated on its reference models, with the metrics a reviewer asks for
(:mod:`fpenc.bench.metrics`) and its runner (:mod:`fpenc.bench.runner`)."""
