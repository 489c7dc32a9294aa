"""The fingerprint key (datapoints, views) and fingerprints of suspects (paper §4.2-4.3; DESIGN.md stage 4)."""
