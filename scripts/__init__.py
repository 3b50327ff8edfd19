"""Operator scripts behind the Makefile: bootstrap, local stack, demo. Run them as ``python -m scripts.X``."""
