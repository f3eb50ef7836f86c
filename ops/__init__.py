"""Binary operators for super-resolution networks (training-time PyTorch modules).

``ops`` imports nothing else of the project. See ``ops.choices`` for the per-layer choices.
"""
from ops.choices import CHOICES, defaults, resolve, validate_choice

__all__ = ["CHOICES", "defaults", "resolve", "validate_choice"]
