"""The forensic signals (core/signals.py): one module per family, computed from the decoded frames, the container
and the face tracks with numpy, OpenCV and scikit-image only; :mod:`workers.forensics.compute` runs them all."""
