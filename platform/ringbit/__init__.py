"""ringbit: Ray-based orchestration for long-context and low-bit LM research."""
__version__ = "0.1.0"
