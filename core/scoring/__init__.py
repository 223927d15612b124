"""Pure scoring logic: frame sampling, aggregation, calibration, fusion, decision and overrides.

Everything here is numpy/stdlib only, so it is testable without torch or a database.
"""
