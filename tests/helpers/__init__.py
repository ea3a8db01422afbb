"""Shared test helpers: synthetic videos (``video``) and a vLLM server fixture helper (``server``)."""
