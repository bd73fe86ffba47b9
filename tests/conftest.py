"""Test-wide settings: no model hub, one torch thread (tiny models; no oversubscription)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OVERSIGHT_THREADS", "1")
os.environ.setdefault("OVERSIGHT_QUIET", "1")
