"""NUMA: memory policy and page placement (policy.py), automatic balancing (balancing.py)."""
from __future__ import annotations
