"""The Faust worker, one box of the README's diagram per part: `topology` wires the account
stage, the cluster stage and the verdicts' way back onto the core; `outbox` and `held_writes`
batch what goes between the stages and into the changelogs; `partition_context` snapshots
what moves with a partition; `health` and `dead_letter_log` are what an operator sees;
`process` runs one worker. Imports the core and streams.edge, never the offline tools."""
