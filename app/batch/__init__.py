"""Batches: up to BATCH_MAX_ITEMS single actions in one request, run by durable workers.

submission.py checks and stores a batch; documents.py answers what it looks like; worker.py
runs its items through the same executor as a single call; http.py is the Flask shell.
"""
