"""Universal adversarial perturbations of the victim (paper §3.3, §4.1; DESIGN.md stage 3)."""
