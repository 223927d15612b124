"""Operator and developer tools: benchmarks, the demo, evaluation, scanning, test-pack generation."""
