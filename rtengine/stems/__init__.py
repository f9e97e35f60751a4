"""Streaming stem separation: the model contract, the separator and training (``train``)."""
