"""Corpus, tokenizer and token shards."""
