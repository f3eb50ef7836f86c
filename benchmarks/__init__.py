"""Scripts that measure speed and accuracy and write BENCHMARKS.md."""
