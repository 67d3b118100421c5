"""Labelled LLM-API traffic: benign populations and distillation campaigns, deterministic by seed.

Pure standard library; the only I/O is `write_files`. See docs/simulator.md.
"""

from .generate import account_labels, generate_events, write_files
from .roster import GROUPS, LABELS, scenario_groups
from .scenario import Scenario

__all__ = ["GROUPS", "LABELS", "Scenario", "account_labels", "generate_events", "scenario_groups",
           "write_files"]
