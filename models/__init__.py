"""distillguard's pure detection core.

Event types, event-time windows, aggregates, features, detectors and policy. No I/O, no
environment, no wall clock, and nothing from Kafka, Faust or asyncio: the Faust agents in
`streams/` and offline replay drive the same code. Importing it runs nothing.

Which build of it runs (the compiled one of `make core`, or these sources) is chosen by the
program, first thing: `models/_build.py` `select_build`, which the first import of `streams`
calls.
"""
