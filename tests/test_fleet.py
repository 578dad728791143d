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
