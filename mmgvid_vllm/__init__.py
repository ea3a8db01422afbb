"""mmgvid-vllm: MMG-Vid video-token pruning for vLLM.

``mmgvid_vllm.pruning`` is the pure-torch pruning core (no vLLM import);
the rest integrates it into vLLM's LLaVA-OneVision serving path.
"""

__version__ = "0.1.0"
