"""Starts and supervises the API and a worker for `make run`."""
