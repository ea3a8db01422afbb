"""deploy/ and docker/ without Docker or a cluster: files parse, required fields are there,
references between them hold, and the image installs the package as README.md says.

No Kubernetes JSON schemas can be fetched here (kubeconform needs them from the network), so the
manifests are checked for the fields the API server and the operators (Prometheus Operator, KEDA)
require, and for the links between them (selectors, named ports, targets).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def load_k8s() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind"} <= doc.keys(), path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path
            docs[doc["kind"]] = doc
    return docs


@pytest.fixture(scope="module")
def k8s():
    return load_k8s()


def test_k8s_kinds(k8s):
    assert set(k8s) == {"Deployment", "Service", "ServiceMonitor", "PrometheusRule", "ScaledObject", "Kustomization"}
    assert k8s["Deployment"]["apiVersion"] == "apps/v1"
    assert k8s["ServiceMonitor"]["apiVersion"] == "monitoring.coreos.com/v1"
    assert k8s["ScaledObject"]["apiVersion"] == "keda.sh/v1alpha1"


def test_deployment(k8s):
    spec = k8s["Deployment"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] and container["image"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health" and get["port"] in ports, probe
    volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= volumes
    assert container["args"] == dockerfile_json("CMD")


def test_service_and_servicemonitor(k8s):
    deployment, service, monitor = k8s["Deployment"], k8s["Service"], k8s["ServiceMonitor"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"


def test_autoscaling_on_queue_length(k8s):
    scaled = k8s["ScaledObject"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == k8s["Deployment"]["metadata"]["name"]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    assert "vllm:num_requests_waiting" in trigger["metadata"]["query"]
    assert float(trigger["metadata"]["threshold"]) > 0


def test_prometheusrule_matches_alerts_file(k8s):
    alerts = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    assert k8s["PrometheusRule"]["spec"] == alerts
    for group in alerts["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= rule.keys()


def test_kustomization_files_exist(k8s):
    kust = k8s["Kustomization"]
    for resource in kust["resources"]:
        assert (K8S / resource).is_file(), resource
    for gen in kust.get("configMapGenerator", []):
        for entry in gen["files"]:
            assert (K8S / entry.split("=", 1)[-1]).is_file(), entry


def test_compose():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"vllm", "prometheus", "grafana"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {volume}"
            else:
                assert source in compose["volumes"], f"{name}: {volume}"
    vllm = services["vllm"]
    assert (DEPLOY / vllm["build"]["context"] / vllm["build"]["dockerfile"]).resolve() == ROOT / "docker/Dockerfile"
    assert vllm["command"] == dockerfile_json("CMD")
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # Prometheus scrapes the vllm service; Grafana's provisioning points at Prometheus and the dashboards.
    prom = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["vllm:8000"]
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/mmgvid.yml").read_text())
    dash_dir = provider["providers"][0]["options"]["path"]
    assert grafana_mounts["./grafana/dashboards"] == dash_dir


def test_grafana_dashboard():
    dash = json.loads((DEPLOY / "grafana/dashboards/mmgvid.json").read_text())
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == uid and panel["targets"], panel["title"]
    for name in (
        "mmgvid_video_kept_tokens_total", "mmgvid_video_original_tokens_total", "mmgvid_video_retention_ratio",
        "mmgvid_pruning_duration_seconds_bucket", "vllm:time_to_first_token_seconds_bucket",
        "vllm:request_prefill_time_seconds_bucket", "vllm:kv_cache_usage_perc", "vllm:request_success_total",
    ):
        assert name in exprs, name
    assert "histogram_quantile(0.99, sum by (le, method) (rate(mmgvid_pruning_duration_seconds_bucket" in exprs


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian package prometheus)")
def test_promtool_checks_and_alert_unit_tests():
    for cmd in (
        ["promtool", "check", "config", "prometheus/prometheus.yml"],
        ["promtool", "check", "rules", "prometheus/alerts.yml"],
        ["promtool", "test", "rules", "prometheus/alerts_test.yml"],  # the alerts fire on synthetic series
    ):
        proc = subprocess.run(cmd, cwd=DEPLOY, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout}{proc.stderr}"


# -- docker/ -------------------------------------------------------------------------------------
def dockerfile_lines() -> list[str]:
    text = (ROOT / "docker/Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def dockerfile_json(instruction: str) -> list[str]:
    (line,) = [inst for inst in dockerfile_lines() if inst.startswith(instruction + " ")]
    return json.loads(line[len(instruction) + 1 :])


def pip_install_args(command: str) -> list[str]:
    """The requirement arguments of the first ``pip install`` in a shell command line."""
    words = shlex.split(command.split("&&")[0])
    words = words[words.index("install") + 1 :]
    return [w for w in words if not w.startswith("-")]


def readme_gpu_install() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## On a GPU", 1)[1]
    (line,) = [ln for ln in section.splitlines() if ln.startswith("pip install ")]
    return pip_install_args(line.split("#")[0])


def test_dockerfile_base_image_is_the_readme_vllm_version():
    readme_pins = [a for a in readme_gpu_install() if a.startswith("vllm==")]
    (line,) = [inst for inst in dockerfile_lines() if inst.startswith("FROM ")]
    assert readme_pins == ["vllm==" + line.split(":v", 1)[1]]
    assert line.split()[1].startswith("vllm/vllm-openai:")


def test_dockerfile_installs_the_package_as_the_readme_does():
    (run,) = [inst for inst in dockerfile_lines() if inst.startswith("RUN ") and "pip install" in inst]
    image_args, readme_args = pip_install_args(run[4:]), readme_gpu_install()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert project in readme_args
    # The same command line, with the project's name replaced by the copied source tree.
    assert [project if a == "/src" else a for a in image_args] == readme_args
    copied = {Path(src).parts[0]
              for inst in dockerfile_lines() if inst.startswith("COPY ") for src in inst.split()[1:-1]}
    assert {"pyproject.toml", "README.md", "mmgvid_vllm"} <= copied  # what pip needs to build it


def test_dockerfile_default_command_serves_llava_onevision_with_pruning():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert dockerfile_json("ENTRYPOINT") == ["mmgvid"] and "mmgvid" in project["scripts"]
    cmd = dockerfile_json("CMD")
    assert cmd[:2] == ["serve", "llava-onevision"]
    assert 0 < float(cmd[cmd.index("--retention") + 1]) < 1


def test_dockerignore_keeps_what_the_image_copies():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and ln[0] != "#"]
    assert patterns[0] == "*"  # allow-list: .venv, tests, caches stay out of the build context
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {src for inst in dockerfile_lines() if inst.startswith("COPY ") for src in inst.split()[1:-1]}
    assert copied <= allowed
    assert re.search(r"__pycache__", " ".join(patterns))
