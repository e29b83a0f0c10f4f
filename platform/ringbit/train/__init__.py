"""Pretraining on Ray Train + DeepSpeed, and perplexity."""
