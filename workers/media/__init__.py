"""Media handling for the detection worker: decode, find faces, link them into tracks (probing is in db.media).

Heavy imports (torch, facenet-pytorch) live in `faces` only, so importing this package stays cheap.
"""
