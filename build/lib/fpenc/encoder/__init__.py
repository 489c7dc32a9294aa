"""The fingerprint encoder (paper §4.3): network, supervised contrastive loss, training module.

``network`` and ``loss`` are plain torch (``fpenc verify`` uses them without Lightning);
``module`` holds the LightningModule that trains and tests the encoder (``options``: its
checked ``model:`` options); exporting the bundle and the report are callbacks (:mod:`fpenc.callbacks`).
"""
