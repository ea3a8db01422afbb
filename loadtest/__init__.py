"""Load generator for OpenAI-compatible video chat endpoints (vLLM with MMG-Vid pruning).

Modules, one job each:

* ``corpus``        synthetic videos (PyAV), seeded, cached on disk by parameters
* ``client``        one streamed chat request with a video, timed (TTFT, ITL, latency)
* ``runner``        one load point: fixed concurrency or Poisson rate, bounded, with progress
* ``stats``         per-point summary with ``vllm bench serve`` metric names
* ``server_checks`` target URL, served model, prefix/multimodal cache checks via /metrics
* ``sweep``         levels x configurations, distinct video per request, shard seeds
* ``merge``         pool several machines' shard results
* ``report``        results.json, results.md, ttft.png, throughput.png
* ``cli``           ``python -m loadtest`` (see ``--help`` and loadtest/README.md)
"""
