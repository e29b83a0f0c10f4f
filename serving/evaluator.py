"""The InstructScore evaluator behind POST /v1/evaluate (logic: ringbit.evaluator.service)."""

from ringbit.evaluator.service import build_evaluator_app

app = build_evaluator_app
