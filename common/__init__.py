"""Shared core for the four DARTS fixes: search spaces and supernet, data, NAS-Bench-201 query,
search building blocks and run infrastructure. Nothing here is a paper's contribution."""
