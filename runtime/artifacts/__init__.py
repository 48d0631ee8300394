"""What an exported file is, and whether to trust it: the records kept beside the files.

``manifest`` (``manifest.json``: each file's format, checksum, tensor specs, metadata; read through
``manifest_schema``, which checks the whole document first), ``signing`` (an Ed25519 signature over the
manifest, checked with ``cryptography`` only when a key is given), ``checkset`` (the labelled images and
the trained model's outputs that a device checks files against).

May import: ``runtime.errors``, ``runtime.atomic``. Nothing else of runtime: every other package reads these.
"""
