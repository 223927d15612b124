"""Live streams: the rolling decision (Option A / Option B of seed 000) and the simulator that compares them."""
