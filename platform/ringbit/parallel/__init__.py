"""Sequence parallelism: how a sequence is split over ranks (layouts), ring attention,
all-to-all (Ulysses) attention and their hybrid. Plain torch.distributed, no Ray."""
