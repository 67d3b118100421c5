"""The `distillguard` command (`main`): one subcommand per tool, the demo (`demo`, `watch`,
`produce`) and the allow-list (`allow`). The only room that imports all the others."""
