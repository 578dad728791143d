"""The kernel's CPU/node list ("0-3,8,10-11") and mask ("0000ffff,00000000") formats.

The parsers live in :mod:`physmem._syntax` (one per kernel syntax); these names stay for
callers that import them from here.
"""
from __future__ import annotations

from .._syntax import format_cpulist, parse_cpulist, parse_cpumask

__all__ = ["parse_cpulist", "parse_cpumask", "format_cpulist"]
