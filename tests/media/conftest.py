"""Media tier: probing and decoding real and generated videos with PyAV (containers, codecs, crafted files that
lie about their size). Needs PyAV/FFmpeg and ../shared/testdata (tests skip without it); no torch, database or
network. Under a minute on 2 cores: `pytest tests/media`."""
