"""NUMA: memory policy and page placement (policy.py), automatic balancing (balancing.py)."""
from __future__ import annotations

from .balancing import balancing, set_balancing
from .policy import (
                     NOT_PRESENT,
                     ZERO_PAGE_OR_UNMAPPED,
                     MemPolicy,
                     Policy,
                     bind,
                     get_policy,
                     move,
                     node_of,
                     online_nodes,
                     possible_nodes,
                     set_policy,
)

__all__ = ["balancing", "set_balancing", "MemPolicy", "Policy", "bind", "get_policy", "move",
           "node_of", "online_nodes", "possible_nodes", "set_policy", "NOT_PRESENT",
           "ZERO_PAGE_OR_UNMAPPED"]
