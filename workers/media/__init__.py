"""The detection worker's torch side of media: find faces, link them into tracks, cut crops (decoding is in core.media).

Heavy imports (torch, facenet-pytorch) live in `faces` only, so importing this package stays cheap.
"""
