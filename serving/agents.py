"""The agents (computer control, ReAct, MemWalker) behind /v1/agents (logic: ringbit.agents.service)."""

from ringbit.agents.service import build_agents_app

app = build_agents_app
