"""contrib/: the Prometheus alert rules and the Grafana dashboard, held to the product's metrics.

The source of truth is what record.metrics really writes: a textfile made here by write_run
and write_status (a Verdict of health.evaluate on pure Signals), parsed with prometheus_client.
Every metric name, label name and matched label value the rules and the dashboard use must be in
it, and promtool is fed that very output over time (healthy, then broken, then frozen) and must
fire exactly the expected alerts. The hand-written promtool unit tests cover each alert firing
and not firing; a broken copy of the rules must fail promtool, so these tests can fail.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from supervisor.config import load as config
from supervisor.config.load import Config
from supervisor.core.states import FAILED, REFUSED, SUCCESS
from supervisor.health import verdict as health
from supervisor.health.verdict import Sentinel
from supervisor.postgres.dumps import DatabaseDumps, Dump
from supervisor.record import metrics
from supervisor.record.report import RunReport
from supervisor.restore.drill import DrillReport
from supervisor.storage.markers import Marker
from tests.harness.configs import MINIMAL
from tests.harness.signals import one_destination

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "contrib" / "prometheus" / "ardua-backup.rules.yml"
RULES_TEST = ROOT / "contrib" / "prometheus" / "ardua-backup.rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "ardua-backup.json"

INSTANCE = "backup:9100"
SCRAPE_JOB = "node"  # the scrape's job label; honor_labels keeps ardua-backup's own job label
TARGET_LABELS = {"instance"}  # attached by Prometheus to every scraped series
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # promtool's unit tests start at t=0
HEALTHY_AT, BROKEN_AT = EPOCH, EPOCH + timedelta(minutes=90)


# -- the product's own output ---------------------------------------------------------------------

def make_config(tmp_path: Path) -> Config:
    return config.parse(f'state_dir = "{tmp_path}/state"\n' + MINIMAL + f"""
[jobs.receipts-upload]
schedule = "45 * * * *"
source = "/data/receipts"
prefix = "receipts"
[metrics]
textfile = "{tmp_path}/ardua_backup.prom"
""", tmp_path / "config.toml")


def run(job: str, result: str, at: datetime, **counts: int) -> RunReport:
    return RunReport(job, f"{job}-{at.timestamp():.0f}", result, 0 if result == SUCCESS else 1,
                     at - timedelta(minutes=2), at, 120.0, **counts)


DUMP = Dump("last/ardua-19691231-000000.dump", 48_000_000, HEALTHY_AT - timedelta(hours=25))
DB_OK = HEALTHY_AT - timedelta(hours=1)  # db-upload's last verified upload
RECEIPTS_OK = HEALTHY_AT - timedelta(minutes=20)
DRILL = Marker(HEALTHY_AT - timedelta(days=7, hours=23), True, DUMP.key, 95)


def status_at(now: datetime, in_s3: bool) -> health.Verdict:
    signals = one_destination(
        now, dump_job="db-upload", databases=(DatabaseDumps("ardua", DUMP, None),), in_s3=in_s3,
        sentinels=(Sentinel("db-upload", "postgres", DB_OK),
                   Sentinel("receipts-upload", "receipts", RECEIPTS_OK)), drill=DRILL)
    return health.evaluate(signals, config.HealthConfig(dump_job="db-upload", db_container=""),
                           now)


Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def snapshot(cfg: Config) -> Snapshot:
    assert cfg.metrics.textfile is not None
    families = text_string_to_metric_families(cfg.metrics.textfile.read_text())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families for s in family.samples}


@dataclass
class Story:
    """The textfile at two status checks: everything fine at t=0; at t=90m the same dump is
    26.5h old and gone from S3, db-upload's last verified upload 2.5h old and its last run refused,
    receipts-upload's last run failed (its sentinel still fresh), the last drill 8d old."""

    healthy: Snapshot
    broken: Snapshot
    verdicts: tuple[str, str]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    cfg = make_config(tmp_path_factory.mktemp("metrics"))
    drill = DrillReport(job="restore-drill", run_id="drill-1",
                        started_at=DRILL.at - timedelta(minutes=3), result=SUCCESS,
                        exit_code=None, finished_at=DRILL.at, duration_s=180,
                        dump_key=DUMP.key, bytes=DUMP.size, download_s=20, restore_s=75)
    metrics.write_run(cfg, drill)
    metrics.write_run(cfg, run("db-upload", SUCCESS, DB_OK, files=1, bytes=DUMP.size))
    metrics.write_run(cfg, run("receipts-upload", SUCCESS, RECEIPTS_OK, files=7, bytes=900_000))
    ok = status_at(HEALTHY_AT, in_s3=True)
    metrics.write_status(cfg, ok.values())
    healthy = snapshot(cfg)
    metrics.write_run(cfg, run("db-upload", REFUSED, BROKEN_AT - timedelta(minutes=5)))
    metrics.write_run(cfg, run("receipts-upload", FAILED, BROKEN_AT - timedelta(minutes=4)))
    bad = status_at(BROKEN_AT, in_s3=False)
    metrics.write_status(cfg, bad.values())
    return Story(healthy, snapshot(cfg), (ok.state, bad.state))


@pytest.fixture(scope="module")
def exported(story: Story) -> dict[str, dict[str, set[str]]]:
    """metric (sample) name -> label name -> the values seen."""
    found: dict[str, dict[str, set[str]]] = {}
    for name, labels in (*story.healthy, *story.broken):
        seen = found.setdefault(name, defaultdict(set))  # one without labels counts too
        for label, value in labels:
            seen[label].add(value)
    return found


def test_the_story_is_what_the_product_says(story: Story) -> None:
    assert story.verdicts == ("OK", "CRITICAL")
    assert story.broken[("ardua_backup_status_timestamp_seconds", ())] == 90 * 60


# -- a small PromQL reader: which metrics, label matchers and grouping labels an expr uses --------

_TOKEN = re.compile(r"""
    (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<range>\[[^\]]*\])
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},])
  | (?P<ws>\s+)
""", re.VERBOSE)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _GROUPING | {"and", "or", "unless", "bool", "offset"}
_AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile"}


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value)


def read_promql(expr: str) -> tuple[list[Selector], set[str]]:
    tokens, pos = [], 0
    for m in _TOKEN.finditer(expr):
        assert m.start() == pos, f"cannot read {expr[pos:]!r} in {expr!r}"
        pos = m.end()
        if m.lastgroup != "ws":
            tokens.append((m.lastgroup, m.group()))
    assert pos == len(expr), f"cannot read {expr[pos:]!r} in {expr!r}"
    selectors, grouping, i = [], set(), 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text in _GROUPING and following == "(":
            i += 2
            while tokens[i][1] != ")":
                if tokens[i][0] == "ident":
                    grouping.add(tokens[i][1])
                i += 1
        elif kind == "ident" and (text in _KEYWORDS or text in _AGGREGATORS or following == "("):
            pass  # an operator or a function
        elif kind == "ident" or text == "{":
            metric, matchers = (text, []) if kind == "ident" else ("", [])
            j = i + 1 if kind == "ident" else i
            if j < len(tokens) and tokens[j][1] == "{":
                j += 1
                while tokens[j][1] != "}":
                    label, op, value = (t[1] for t in tokens[j:j + 3])
                    matchers.append((label, op, value[1:-1]))
                    j += 4 if tokens[j + 3][1] == "," else 3
                j += 1
            selectors.append(Selector(metric, tuple(matchers)))
            i = j - 1
        i += 1
    return selectors, grouping


def test_the_promql_reader_reads_what_the_rules_write() -> None:
    selectors, grouping = read_promql(
        'sum by (instance, job) (increase(a_total{kind="refused"}[1h])) > 0 or max by (x) '
        '(b{job!="restore-drill", instance=~"$instance"}) == 1 unless on(y) time() - c > 2 * 3600')
    assert selectors == [Selector("a_total", (("kind", "=", "refused"),)),
                         Selector("b", (("job", "!=", "restore-drill"),
                                        ("instance", "=~", "$instance"))),
                         Selector("c", ())]
    assert grouping == {"instance", "job", "x", "y"}


def misuses(expr: str, exported: dict[str, dict[str, set[str]]]) -> list[str]:
    """What in expr the product does not export: metric names, label names, label values."""
    selectors, grouping = read_promql(expr)
    problems = []
    for s in selectors:
        if s.metric not in exported:
            problems.append(f"{s.metric}: not exported")
            continue
        labels = exported[s.metric]
        for label, op, value in s.matchers:
            if label in TARGET_LABELS:
                continue
            if label not in labels:
                problems.append(f"{s.metric}: no label {label}")
            elif op in ("=", "!=") and value not in labels[label]:
                problems.append(f"{s.metric}: {label} is never {value!r} "
                                f"(seen: {sorted(labels[label])})")
    known = TARGET_LABELS.union(*(exported.get(s.metric, {}) for s in selectors))
    problems += [f"grouping by {label}: no metric here has it" for label in grouping - known]
    return problems


# -- the rules ------------------------------------------------------------------------------------

def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_rules_use_only_exported_metrics_labels_and_values(exported) -> None:
    used = set()
    for rule in alert_rules():
        assert misuses(rule["expr"], exported) == [], rule["alert"]
        used |= {s.metric for s in read_promql(rule["expr"])[0]}
    # The brief's list: the verdict, the dump, S3, sentinels, runs, guards, drills.
    assert used >= {
        "ardua_backup_status", "ardua_backup_status_timestamp_seconds",
        "ardua_backup_dump_age_seconds", "ardua_backup_s3_has_latest_dump",
        "ardua_backup_sentinel_age_seconds", "ardua_backup_last_run_result",
        "ardua_backup_last_success_timestamp_seconds", "ardua_backup_guard_refusals_total",
        "ardua_backup_restore_drill_age_seconds", "ardua_backup_restore_drill_ok"}


def test_a_renamed_metric_would_be_caught(exported) -> None:
    # prometheus_client appends _total to a counter: the name without it matches nothing.
    assert misuses('increase(ardua_backup_guard_refusals{kind="refused"}[1h])', exported) == [
        "ardua_backup_guard_refusals: not exported"]
    assert misuses('ardua_backup_last_run_result{result="error"}', exported)
    assert misuses('ardua_backup_sentinel_age_seconds{database="x"}', exported)


def _threshold_s(expr: str) -> float:
    """The number an age is compared with: the last `> N * M` or `<= N * M` in expr."""
    found = re.findall(r"(?:>|<=)\s*(\d+(?:\s*\*\s*\d+)*)\s*$", expr.strip())
    assert found, expr
    return math.prod(int(n) for n in found[-1].split("*"))


def test_thresholds_are_the_products_defaults(tmp_path: Path) -> None:
    defaults = make_config(tmp_path).health
    limits = {
        "ArduaBackupDumpStale": (defaults.dump_max_age_s, "health.dump_max_age"),
        "ArduaBackupDumpNotInS3": (defaults.sentinel_max_age_s, "health.sentinel_max_age"),
        "ArduaBackupUploadFailing": (defaults.sentinel_max_age_s, "health.sentinel_max_age"),
        "ArduaBackupStatusCheckStale": (defaults.sentinel_max_age_s, "health.sentinel_max_age"),
        "ArduaBackupAlwaysDeferred": (defaults.sentinel_max_age_s, "health.sentinel_max_age"),
        "ArduaBackupRestoreDrillOverdue": (defaults.drill_max_age_s, "health.drill_max_age"),
    }
    rules = {r["alert"]: r for r in alert_rules()}
    for name, (limit, key) in limits.items():
        assert _threshold_s(rules[name]["expr"]) == limit, name
        assert f"{key}'s default" in rules[name]["annotations"]["description"], name


def test_every_alert_has_a_severity_summary_and_description() -> None:
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"].keys() >= {"summary", "description"}, rule["alert"]
    summaries = {r["alert"]: r["annotations"]["summary"] for r in rules}
    # The design's words (docs/operations.md#health).
    assert summaries["ArduaBackupDumpStale"] == "DB backup not producing new data"
    assert summaries["ArduaBackupUploadFailing"] == "Upload failing: {{ $labels.job }}"
    assert summaries["ArduaBackupDumpNotInS3"] == "Upload ran but missed the newest dump"
    assert summaries["ArduaBackupRestoreDrillOverdue"] == "Restore drill overdue"


# -- promtool -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (scripts/setup.sh installs Debian's prometheus)")
    return path


def promtool_run(promtool: str, *args: str | Path, cwd: Path | None = None
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def test_promtool_check_rules(promtool: str) -> None:
    done = promtool_run(promtool, "check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout + done.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    done = promtool_run(promtool, "test", "rules", RULES_TEST)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "SUCCESS" in out and "FAILED" not in out, out


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {r["alert"] for r in alert_rules()}
    assert fired == names and quiet == names


def test_a_broken_rules_file_fails_promtool(promtool: str, tmp_path: Path) -> None:
    text = RULES.read_text()
    # A PromQL syntax error: check rules says no.
    bad = tmp_path / "syntax" / RULES.name
    bad.parent.mkdir()
    bad.write_text(text.replace("expr: ardua_backup_status == 2", "expr: ardua_backup_status =="))
    done = promtool_run(promtool, "check", "rules", bad)
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr
    # A valid rule with the wrong threshold (27h): the unit tests say no.
    wrong = tmp_path / "threshold"
    wrong.mkdir()
    changed = text.replace("ardua_backup_dump_age_seconds > 26 * 3600",
                           "ardua_backup_dump_age_seconds > 27 * 3600")
    assert changed != text
    (wrong / RULES.name).write_text(changed)
    shutil.copy(RULES_TEST, wrong / RULES_TEST.name)
    assert promtool_run(promtool, "check", "rules", wrong / RULES.name).returncode == 0
    done = promtool_run(promtool, "test", "rules", wrong / RULES_TEST.name)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "FAILED" in out and "alertname: ArduaBackupDumpStale" in out, out


def _series(story: Story) -> list[dict[str, str]]:
    """The two textfiles as scraped once a minute: healthy for 90 minutes, then broken and
    frozen (the daemon stopped) until 4h. The scrape adds instance, and job where the metric has
    none (honor_labels: true)."""
    steps_a, steps_b = 90, 151  # t = 0..89m, 90..240m
    series = []
    for key in sorted(story.healthy.keys() | story.broken.keys()):
        name, labels = key
        labels = {"instance": INSTANCE, "job": SCRAPE_JOB, **dict(labels)}
        selector = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        a, b = story.healthy.get(key), story.broken.get(key)
        values = (f"{'_' if a is None else repr(a)}x{steps_a - 1} "
                  f"{'_' if b is None else repr(b)}x{steps_b - 1}")
        series.append({"series": selector, "values": values})
    return series


def _alert(name: str, severity: str, job: str = SCRAPE_JOB, **more: str) -> dict[str, object]:
    labels = {"alertname": name, "alertstate": "firing", "instance": INSTANCE, "job": job,
              "severity": severity, **more}
    return {"labels": "ALERTS{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}",
            "value": 1}


def test_promtool_fed_the_products_own_metrics_fires_the_expected_alerts(
        promtool: str, story: Story, tmp_path: Path) -> None:
    broken = [
        _alert("ArduaBackupCritical", "critical"),
        _alert("ArduaBackupDumpStale", "critical"),
        _alert("ArduaBackupDumpNotInS3", "critical"),
        _alert("ArduaBackupUploadFailing", "critical", job="db-upload"),
        _alert("ArduaBackupRunFailed", "warning", job="receipts-upload", result="failed"),
        _alert("ArduaBackupGuardRefused", "warning", job="db-upload"),
        _alert("ArduaBackupRestoreDrillOverdue", "warning"),
    ]
    frozen = [*broken, _alert("ArduaBackupStatusCheckStale", "critical")]
    firing = 'ALERTS{alertstate="firing"}'
    unit = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": _series(story),
            "promql_expr_test": [
                {"expr": firing, "eval_time": "89m", "exp_samples": []},
                {"expr": firing, "eval_time": "2h", "exp_samples": broken},
                # 2h after the last check: the frozen gauges no longer hide a dead daemon.
                {"expr": firing, "eval_time": "3h29m", "exp_samples": broken},
                {"expr": firing, "eval_time": "3h31m", "exp_samples": frozen},
            ],
        }],
    }
    path = tmp_path / "real-metrics.test.yml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False))
    done = promtool_run(promtool, "test", "rules", path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "SUCCESS" in out, out


# -- the Grafana dashboard ------------------------------------------------------------------------

_DATASOURCE = {"type": "object", "required": ["type", "uid"],
               "properties": {"type": {"const": "prometheus"}, "uid": {"type": "string"}}}
# What Grafana needs to import a classic (v1) dashboard: its dashboard kind schema's required
# fields, gridPos {h, w, x, y} on its 24-column grid, datasource references as objects
# (schemaVersion >= 36), and a PromQL expr with a refId in every query.
DASHBOARD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "editable", "graphTooltip", "time",
                 "templating"],
    "properties": {
        "id": {"type": ["integer", "null"]},
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,40}$"},
        "title": {"type": "string", "minLength": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "version": {"type": "integer", "minimum": 0},
        "refresh": {"type": "string"},
        "time": {"type": "object", "required": ["from", "to"],
                 "properties": {"from": {"type": "string"}, "to": {"type": "string"}}},
        "templating": {"type": "object", "required": ["list"], "properties": {"list": {
            "type": "array", "items": {
                "type": "object", "required": ["name", "type"],
                "properties": {"name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                               "type": {"enum": ["datasource", "query", "custom", "constant",
                                                 "interval", "textbox", "adhoc"]},
                               "datasource": _DATASOURCE}}}}},
        "panels": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/panel"}},
    },
    "$defs": {
        "gridPos": {
            "type": "object", "required": ["h", "w", "x", "y"],
            "properties": {"h": {"type": "integer", "minimum": 1},
                           "w": {"type": "integer", "minimum": 1, "maximum": 24},
                           "x": {"type": "integer", "minimum": 0, "maximum": 23},
                           "y": {"type": "integer", "minimum": 0}}},
        "target": {
            "type": "object", "required": ["refId", "expr"],
            "properties": {"refId": {"type": "string", "minLength": 1},
                           "expr": {"type": "string", "minLength": 1},
                           "legendFormat": {"type": "string"},
                           "format": {"enum": ["time_series", "table", "heatmap"]},
                           "instant": {"type": "boolean"},
                           "datasource": _DATASOURCE}},
        "panel": {
            "type": "object", "required": ["id", "type", "title", "gridPos"],
            "properties": {"id": {"type": "integer", "minimum": 1},
                           "type": {"enum": ["row", "stat", "timeseries", "table", "gauge",
                                             "bargauge", "state-timeline", "text"]},
                           "title": {"type": "string", "minLength": 1},
                           "gridPos": {"$ref": "#/$defs/gridPos"},
                           "datasource": _DATASOURCE,
                           "targets": {"type": "array", "items": {"$ref": "#/$defs/target"}},
                           "fieldConfig": {"type": "object", "required": ["defaults"]}},
            "if": {"properties": {"type": {"const": "row"}}},
            "then": {"required": ["collapsed", "panels"]},
            "else": {"required": ["datasource", "targets", "fieldConfig"],
                     "properties": {"targets": {"minItems": 1}}},
        },
    },
}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_validates_against_the_schema() -> None:
    board = dashboard()
    jsonschema.Draft202012Validator.check_schema(DASHBOARD_SCHEMA)
    jsonschema.validate(board, DASHBOARD_SCHEMA, cls=jsonschema.Draft202012Validator)
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(set(refs)) == len(refs), p["title"]


def test_the_schema_rejects_what_grafana_would_not_load() -> None:
    board = dashboard()
    del board["panels"][1]["gridPos"]["w"]
    with pytest.raises(jsonschema.ValidationError, match="'w' is a required property"):
        jsonschema.validate(board, DASHBOARD_SCHEMA, cls=jsonschema.Draft202012Validator)
    board = dashboard()
    board["panels"][1]["targets"][0].pop("expr")
    with pytest.raises(jsonschema.ValidationError, match="'expr' is a required property"):
        jsonschema.validate(board, DASHBOARD_SCHEMA, cls=jsonschema.Draft202012Validator)


def test_dashboard_queries_only_exported_metrics_and_shows_them_all(exported) -> None:
    board = dashboard()
    shown = set()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert misuses(target["expr"], exported) == [], panel["title"]
            shown |= {s.metric for s in read_promql(target["expr"])[0]}
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)",
                                         variable["definition"]).groups()
            assert metric in exported and label in TARGET_LABELS | exported[metric].keys()
    assert shown == set(exported), "a metric the product exports has no panel (or one is gone)"
    wanted = {"stat": 6, "timeseries": 7, "table": 1}  # verdict, ages, runs, refusals, drills
    kinds = [p["type"] for p in board["panels"] if p["type"] != "row"]
    assert {k: kinds.count(k) for k in wanted} == wanted
