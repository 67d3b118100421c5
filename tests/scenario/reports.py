"""What the scenario floors share: the core run over a simulated scenario, scored on its labels."""

from __future__ import annotations

from distillguard.models.config import DetectorConfig
from distillguard.models.evaluation import Report, evaluate_core
from distillguard.models.events import event_from_mapping
from distillguard.simulator import Scenario, account_labels, generate_events


def core_report(scenario: Scenario) -> Report:
    """The default detector over `scenario`'s events, evaluated against its labels."""
    labels = {lab["account_id"]: (lab["label"], lab["group"])
              for lab in account_labels(scenario)}
    return evaluate_core(map(event_from_mapping, generate_events(scenario)), labels,
                         DetectorConfig())
