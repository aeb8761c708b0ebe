"""The torture suite: faults and hostile input, with figures (``make stress``)."""
