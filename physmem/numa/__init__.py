"""NUMA: memory policy and page placement (policy.py), automatic balancing (autobalance.py)."""
from __future__ import annotations

from .autobalance import Balancing, BalancingMode, balancing, set_balancing
from .policy import (
                     NOT_PRESENT,
                     ZERO_PAGE_OR_UNMAPPED,
                     MemPolicy,
                     MemPolicyMode,
                     bind,
                     get_mempolicy,
                     move,
                     node_of,
                     online_nodes,
                     possible_nodes,
                     set_mempolicy,
)

__all__ = ["Balancing", "BalancingMode", "balancing", "set_balancing", "MemPolicy",
           "MemPolicyMode", "bind", "get_mempolicy", "move", "node_of", "online_nodes",
           "possible_nodes", "set_mempolicy", "NOT_PRESENT", "ZERO_PAGE_OR_UNMAPPED"]
