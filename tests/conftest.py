"""Shared fixtures: small models built from a seed, once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # test-run setting, before TF loads

