"""Language agents hosted on the platform: the structured-reflection computer-control agent
(MiniWoB++), FireAct ReAct agents and the MemWalker long-text reader. Each agent talks to an
`AgentLLM` (any OpenAI-compatible endpoint) and knows nothing about Ray or Serve."""
