"""Media handling for the detection worker: probe, decode, find faces, link them into tracks.

Heavy imports (torch, facenet-pytorch) live in `faces` only, so importing this package stays cheap.
"""
