"""What can be chosen: ArchSpec/LayerSpec, the YAML search space, presets, the model builder."""
