"""Plain-PyTorch decoder LM. Knows nothing about Ray or DeepSpeed."""

from ringbit.models.transformer import Transformer, count_parameters

__all__ = ["Transformer", "count_parameters"]
