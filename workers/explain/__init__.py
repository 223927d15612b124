"""Heatmaps for explain=true jobs: which parts of the decisive face crops each member took as evidence of FAKE."""
