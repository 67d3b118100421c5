"""The core over recorded traffic, no worker involved: `replay` (and `replay_source`, where
the events come from: a JSONL file or a Kafka topic), `evaluate` (the detection-quality
report on the tuning and held-out sets of `scenario_sets`), `sweep` (settings against
labels), `diff` (two runs' decisions), `process_pool` (runs in parallel processes). Imports
the core, the simulator and streams.edge, never the worker."""
