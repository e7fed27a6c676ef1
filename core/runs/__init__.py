"""Runs: the run directory (store, header), the job queue and launching, and the two doors of a training loop (report, control)."""
