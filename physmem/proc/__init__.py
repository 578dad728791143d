"""Typed parsers for the memory files of /proc.

Every reader takes ``proc_root="/proc"`` (so it can be pointed at a copied tree) and the
per-process ones ``pid=None`` (this process). Files are read as bytes; a line that cannot be
read raises :class:`~physmem.errors.ParseError`, a vanished process
:class:`~physmem.errors.ProcessGone`.
"""
from __future__ import annotations

from .meminfo import meminfo, node_meminfo, parse_meminfo

__all__ = [
    "meminfo",
    "node_meminfo",
    "parse_meminfo",
]
