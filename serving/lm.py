"""The platform's models behind an OpenAI-compatible API (logic: ringbit.llm.service)."""

from ringbit.llm.service import build_lm_app

app = build_lm_app
