"""The `ringbit` CLI's commands, one module per group, each a thin adapter over library functions:
services (up, down, status), jobs (submit, sweep, jobs, logs, stop), serve, evaluator (synth,
meta-eval, eval-ppl), models (import, list), export (export-bitnet), agents (eval ...).
ringbit.cli registers them on the main app; options shared by several live in `options`, the
error helper shared by every CLI in ringbit.console."""
