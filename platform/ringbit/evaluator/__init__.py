"""InstructScore: prompts, report parsing and scoring, synthetic training data."""
