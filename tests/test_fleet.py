"""What a fleet deploys, proven against the real thing: the Grafana dashboard's queries and the
alert rules through a real Prometheus scraping the real exporter; the Kubernetes manifests
against a current Kubernetes release's schemas; the systemd unit through systemd-analyze."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("prometheus_client",
                    reason="prometheus-client is not installed (pip install '.[test]')")

from conftest import python_env  # noqa: E402
from test_exporter import (  # noqa: E402,F401 - fixtures
    STARTUP, _HOLDER, _read_line, _stop, _wait_for, hugetlbfs, prometheus, start_exporter)

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib"
RULES = CONTRIB / "prometheus" / "physmem.rules.yml"
DASHBOARD = CONTRIB / "grafana" / "physmem-dashboard.json"
# A vector selector naming a metric: what an expression reads from the exporter.
SELECTOR = re.compile(r"\b((?:physmem_[a-z0-9_]+|up))\s*(\{[^}]*\})?")


def _panel_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel["targets"]:
            # Grafana's variables as "All" would set them.
            expr = target["expr"].replace("$instance", ".*")
            out.append((panel["title"], expr))
    return out


def _alerts() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
            if "alert" in r]


def _series(base: str, expr: str) -> list[dict]:
    body = json.loads(urllib_get(f"{base}/api/v1/query", query=expr))
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def urllib_get(url: str, **params: str) -> bytes:
    import urllib.parse
    import urllib.request

    with urllib.request.urlopen(url + ("?" + urllib.parse.urlencode(params) if params else ""),
                                timeout=10) as r:
        return r.read()


def test_dashboard_panels_and_alerts_against_a_real_prometheus(is_root, start_exporter,
                                                              prometheus, hugepage_pool,
                                                              hugetlbfs, request):
    """A real Prometheus scrapes the real exporter and evaluates the rule file. Every panel
    query of the dashboard returns series; every alert expression evaluates without error,
    and each metric selector in it returns series (an alert's own result is empty while
    nothing is wrong); Prometheus reports every rule healthy; and stopping the exporter
    makes PhysmemExporterDown's expression return its series."""
    hugepage_pool(4)
    env, cwd = python_env()
    # A process holding hugepages, so the per-process panel has something to show.
    target = hugetlbfs / "held"
    target.write_bytes(b"")
    os.truncate(target, 2 << 20)
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(target)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    request.addfinalizer(lambda: _stop(child))
    assert _read_line(child, STARTUP) == "ready"

    proc, url = start_exporter("--listen", "127.0.0.1:0", "--interval", "2")
    base = prometheus(url, rules=RULES)
    _wait_for(lambda: _series(base, "max(physmem_reading_pending) == 0")
              and _series(base, 'physmem_hugepages_mapped_bytes{process="pm-holder-test"}'),
              "every background reading in Prometheus", 60)

    queries = _panel_queries()
    assert len({title for title, _ in queries}) >= 8
    empty = []
    for title, expr in queries:
        if not _series(base, expr):
            empty.append((title, expr))
    assert not empty, f"panel queries without series: {empty}"

    alerts = _alerts()
    assert {a["alert"] for a in alerts} >= {"PhysmemExporterDown", "PhysmemReadingStale",
                                           "PhysmemReadingFailing"}
    for a in alerts:
        _series(base, a["expr"])   # evaluates: status success
        for name, matchers in SELECTOR.findall(a["expr"]):
            assert _series(base, name + matchers), (a["alert"], name + matchers)

    def rules_evaluated() -> list[dict]:
        groups = json.loads(urllib_get(f"{base}/api/v1/rules"))["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if all(r["lastEvaluation"] > "0001" for r in rules) and len(rules) == len(
            alerts) else []

    rules = _wait_for(rules_evaluated, "Prometheus evaluating every rule", 30)
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    # The exporter stops: the down alert's expression returns its series.
    _stop(proc)
    down = next(a["expr"] for a in alerts if a["alert"] == "PhysmemExporterDown")
    _wait_for(lambda: _series(base, down), "up == 0 after the exporter stopped", 20)


UNIT = CONTRIB / "systemd" / "physmem-exporter.service"
ENV_FILE = CONTRIB / "systemd" / "physmem-exporter.env"


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        reason = "systemd-analyze is not installed (Debian package 'systemd'; .ci/run installs it)"
        print(f"SKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return tool


def test_systemd_unit_verifies_and_keeps_its_security_score(tmp_path):
    """``systemd-analyze verify`` accepts the unit (its ExecStart pointed at this physmem),
    and ``systemd-analyze security`` scores it as README says, loopback by default."""
    tool = _systemd_analyze()
    text = UNIT.read_text()
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/usr/local/bin/physmem", f"{sys.executable} -m physmem.cli"))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
    r = subprocess.run([tool, "security", "--offline=yes", str(UNIT)], capture_output=True,
                       text=True, timeout=60, cwd=UNIT.parent)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    score = m[1]
    print(f"systemd-analyze security: {score} {m[2]}")
    readme = (ROOT / "README.md").read_text()
    assert f"scores it {score} " in readme and f"scores it {score} " in text, score
    assert float(score) <= 3.0
    # All interfaces only by opting in: loopback in the unit, commented out in the env file.
    assert "PHYSMEM_LISTEN=127.0.0.1:9877" in text
    assert "#PHYSMEM_LISTEN=:9877" in ENV_FILE.read_text()
    assert not re.search(r"^PHYSMEM_LISTEN", ENV_FILE.read_text(), re.M)


KUBE = CONTRIB / "kubernetes"


def _kube_docs() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                out.setdefault(doc["kind"], []).append(doc)
    return out


def test_kubernetes_manifests_validate_and_fit_together(monkeypatch):
    """The core objects validate, strictly (no unknown field), against the schemas of the
    newest Kubernetes release kubernetes-validate knows; the custom resources (whose schemas
    it does not carry) name what the core objects and ``physmem nfd`` really provide."""
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate is not installed (pip install "
                                    "kubernetes-validate)")
    from physmem import nfd
    from physmem.cli import build_parser

    version = kv.latest_version()
    docs = _kube_docs()
    assert {"DaemonSet", "Service", "ServiceMonitor", "PodMonitor", "NodeFeatureRule",
            "Pod"} <= set(docs)
    for kind, objects in docs.items():
        for doc in objects:
            if kind in ("ServiceMonitor", "PodMonitor", "NodeFeatureRule"):
                with pytest.raises(kv.SchemaNotFoundError):
                    kv.validate(doc, version, strict=True)
                continue
            kv.validate(doc, version, strict=True)
    ds = docs["DaemonSet"][0]
    # The validator has teeth: a misspelt field fails.
    broken = json.loads(json.dumps(ds))
    broken["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, version, strict=True)

    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    # The same three capabilities as the systemd unit, no more.
    unit_caps = re.search(r"^CapabilityBoundingSet=(.*)$", UNIT.read_text(), re.M)[1].split()
    assert sorted(f"CAP_{c}" for c in sc["capabilities"]["add"]) == sorted(unit_caps)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    assert host["proc"] == "/proc" and host["sys"] == "/sys"
    assert mounts["proc"]["readOnly"] and mounts["sys"]["readOnly"]
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    # Its arguments are a command line physmem accepts, reading the mounted /proc and /sys.
    # Those mount points exist in the pod, not on this host: the check that a root is a real
    # /proc or sysfs tree is the pod's to pass, so it is stood in for here.
    from physmem.cli import _options

    monkeypatch.setattr(_options, "_directory", lambda text: None)
    monkeypatch.setattr(os.path, "isdir", lambda path: True)
    args = build_parser().parse_args(container["args"])
    assert args.proc_root == mounts["proc"]["mountPath"] and args.sys_root == mounts["sys"]["mountPath"]
    assert args.nfd == mounts["nfd-features"]["mountPath"] == nfd.DEFAULT_DIR
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.listen == f":{ports['metrics']}"
    assert container["readinessProbe"]["httpGet"]["port"] in ports
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    namespace = ds["metadata"]["namespace"]

    svc = docs["Service"][0]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    sm = docs["ServiceMonitor"][0]["spec"]
    assert sm["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in sm["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    pm = docs["PodMonitor"][0]["spec"]
    assert pm["selector"]["matchLabels"].items() <= pod_labels.items()
    assert {e["port"] for e in pm["podMetricsEndpoints"]} <= set(ports)
    for spec in (sm, pm):
        assert spec["namespaceSelector"]["matchNames"] == [namespace]
        # The job label the alert rules select on.
        endpoints = spec.get("endpoints") or spec["podMetricsEndpoints"]
        assert {"targetLabel": "job", "replacement": "physmem"} in endpoints[0]["relabelings"]
    assert 'up{job="physmem"}' in RULES.read_text()

    # The NFD rule and the pod's node affinity use labels physmem nfd writes, with values
    # that compare as the operators need (integers for Gt/Ge, true/false for IsTrue).
    written = nfd.labels([nfd.Obtainable(2 << 20, 1, 1, 2 << 20, 2 << 20),
                          nfd.Obtainable(1 << 30, 1, 1, 1 << 30, 1 << 30)], dma=True)
    rule_keys = [(k, e["op"]) for rule in docs["NodeFeatureRule"][0]["spec"]["rules"]
                 for m in rule["matchFeatures"] if m["feature"] == "local.label"
                 for k, e in m["matchExpressions"].items()]
    affinity = docs["Pod"][0]["spec"]["affinity"]["nodeAffinity"]
    terms = [e for t in affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
             for e in t["matchExpressions"]]
    terms += [e for p in affinity["preferredDuringSchedulingIgnoredDuringExecution"]
              for e in p["preference"]["matchExpressions"]]
    assert rule_keys and terms
    for key, op in rule_keys + [(e["key"], e["operator"]) for e in terms]:
        assert key in written, key
        if op in ("Gt", "Ge", "Lt", "Le"):
            int(written[key])
        elif op == "IsTrue":
            assert written[key] in ("true", "false")
