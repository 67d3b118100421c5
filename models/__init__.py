"""distillguard's pure detection core.

Event types, event-time windows, aggregates, features, detectors and policy. No I/O, no
environment, no wall clock, and nothing from Kafka, Faust or asyncio: the Faust agents in
`streams/` and offline replay drive the same code.
"""
