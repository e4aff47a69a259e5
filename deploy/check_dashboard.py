#!/usr/bin/env python3
"""Checks deploy/grafana-dashboard.json: valid JSON, every PromQL names only crease metrics
of PROTOCOL.md / the metrics list (with the labels each one has), and, where promtool is
installed, that every expression parses (as recording rules). Prints "N passed, N failed"."""
import json, os, re, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# metric -> labels it carries (besides the scrape's instance/job); histograms add le.
METRICS = {
    "crease_loop_lag_seconds": {"loop"}, "crease_connections": {"loop"},
    "crease_fanout_latency_seconds": set(), "crease_handshakes_total": {"result"},
    "crease_disconnects_total": {"reason"}, "crease_delivered_total": {"prio"},
    "crease_dropped_total": {"prio", "reason"}, "crease_resyncs_total": {"reason"},
    "crease_pending_bytes": {"loop"}, "crease_subscriptions": set(),
    "crease_bus_messages_total": {"kind"}, "crease_bus_reconnects_total": set(),
    "crease_bus_master_changes_total": set(), "crease_bus_resubscribes_total": set(),
    "crease_snapshot_requests_total": {"result"}, "crease_store_publishes_total": {"result"},
}
HIST = {"crease_loop_lag_seconds", "crease_fanout_latency_seconds"}
SCRAPE = {"instance", "job"}
FUNCS = {"sum", "rate", "increase", "max", "min", "avg", "histogram_quantile", "by", "without",
         "label_values"}


def base(name):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and name[:-len(suf)] in HIST:
            return name[:-len(suf)], suf == "_bucket"
    return name, False


def main():
    ok, bad = 0, 0

    def check(cond, what):
        nonlocal ok, bad
        ok, bad = (ok + 1, bad) if cond else (ok, bad + 1)
        if not cond:
            print("FAIL", what)

    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "grafana-dashboard.json")
    with open(path) as f:
        dash = json.load(f)
    check(dash.get("schemaVersion", 0) >= 36, "schemaVersion")
    tv = {v["name"]: v for v in dash["templating"]["list"]}
    check(tv.get("datasource", {}).get("type") == "datasource"
          and tv["datasource"].get("query") == "prometheus", "Prometheus datasource variable")
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
        if p["type"] != "row":
            check(p.get("datasource", {}).get("uid") == "${datasource}", "datasource of " + p["title"])
    exprs.append(("variable instance", tv["instance"]["definition"]))
    for title, e in exprs:
        names = set(re.findall(r"\b(crease_[a-z_]+)", e))
        check(bool(names), "%s: no crease metric in %r" % (title, e))
        allowed = {"le"} | SCRAPE
        for n in names:
            b, bucket = base(n)
            check(b in METRICS, "%s: unknown metric %s" % (title, n))
            check(not (b in HIST and not bucket), "%s: histogram %s used without _bucket" % (title, n))
            allowed |= METRICS.get(b, set())
        for grp in re.findall(r"\bby \(([^)]*)\)", e):
            for lab in (x.strip() for x in grp.split(",")):
                check(lab in allowed, "%s: label %r not carried by %s" % (title, lab, sorted(names)))
    print("%d expressions checked" % len(exprs))
    if shutil.which("promtool"):
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": "crease:dashboard_expr_%d" % i,
             "expr": e.replace("$instance", ".*")}
            for i, (_, e) in enumerate(exprs[:-1])]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            json.dump(rules, f)  # JSON is valid YAML
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        check(r.returncode == 0, "promtool check rules:\n" + r.stdout + r.stderr)
        print("promtool: " + r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr)
        os.unlink(f.name)
    else:
        print("promtool not installed: PromQL syntax not checked (apt-get install prometheus)")
    print("%d passed, %d failed" % (ok, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
