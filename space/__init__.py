"""What can be chosen: ArchSpec/LayerSpec, the YAML search space, presets, the model builder.

``space.builder`` (which imports torch) is not imported here: ``from space.builder import build``.
"""
from space.spec import ArchSpec, LayerSpec
from space.space import SearchSpace

__all__ = ["ArchSpec", "LayerSpec", "SearchSpace"]
