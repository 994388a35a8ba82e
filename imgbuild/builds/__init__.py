"""Building targets: the engine request (data), the executor (the engine), and the run (scheduling)."""
