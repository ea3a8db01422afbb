# Sourced by the GPU scripts: the staged vLLM 0.26 in /tmp/site, this checkout on the path, and
# the plugin's entry point registered without a build backend (the GPU machine has no index).
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
info=/tmp/site/mmgvid_vllm-0.1.0.dist-info
mkdir -p "$info"
printf 'Metadata-Version: 2.1\nName: mmgvid-vllm\nVersion: 0.1.0\n' > "$info/METADATA"
printf '[vllm.general_plugins]\nmmgvid = mmgvid_vllm.plugin:register\n' > "$info/entry_points.txt"
