"""Shared core for the four DARTS fixes; nothing here is a paper's contribution.

Search spaces and supernet, data, the NAS-Bench-201 query, search building blocks, the run harness
(common/harness.py) and the run infrastructure beneath it.
"""
