"""Differential test: pushgw against the official Prometheus Pushgateway.

Every scenario in ``differential_scenarios.SCENARIOS`` is replayed against
the official binary and against pushgw; status codes, selected bodies and
headers, the parsed ``/metrics`` and the normalised ``/api/v1/metrics`` must
agree. A failing test lists every difference it saw, with a transcript.

Set ``PUSHGW_DIFF_SELFCHECK=1`` to run the official binary on both sides
(checks that the harness and its normalisation are deterministic).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import pprint
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from differential_scenarios import SCENARIOS, ExpectExit, Req, Scenario, Snapshot
from servers import ServerProcess, http_request, start_official, start_pushgw, wipe_and_wait

SELFCHECK = os.environ.get("PUSHGW_DIFF_SELFCHECK", "") == "1"
CANDIDATE = "official#2" if SELFCHECK else "pushgw"

IGNORED_PREFIXES = ("go_", "process_", "python_", "pushgateway_")
PUSH_TIME_FAMILIES = ("push_time_seconds", "push_failure_time_seconds")
SETTLE_SECONDS = 2.0  # the official applies writes/deletes asynchronously
STABLE_POLLS = 5  # an unchanged difference over this many polls is final


def start_candidate(*args: str) -> ServerProcess:
    return start_official(*args) if SELFCHECK else start_pushgw(*args)


# --------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------
def _fmt(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _zero_or_not(v) -> str:
    try:
        return "zero" if float(v) == 0 else "nonzero"
    except (TypeError, ValueError):
        return f"unparseable:{v!r}"


def normalise_exposition(text: str, help_any_of=(), own_help=None):
    """Parsed /metrics as a list of families in exposition order.

    Each family: (name, type, help, [(sample name, sorted labels, value,
    timestamp), ...]). Families named like the gateway's own metrics keep only
    samples with a ``job`` label (i.e. pushed ones); push_time_seconds and
    push_failure_time_seconds values become "zero"/"nonzero". For families in
    ``help_any_of`` (name -> accepted HELP strings) an accepted HELP becomes
    "<any of ...>". ``own_help`` (family -> HELP) holds the HELP strings of
    the gateway's own families: a family named like one of them that carries
    that HELP gets "<the gateway's own HELP>" (the official replaces a pushed
    HELP with its own; the texts differ between implementations).
    """
    own_help = own_help or {}
    help_choices = dict(help_any_of)
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # keep comparing something meaningful
        lines = sorted(
            ln for ln in text.splitlines()
            if not ln.split(" ")[0].split("{")[0].startswith(IGNORED_PREFIXES)
            and not any(ln.startswith(f"# {k} {p}") for k in ("HELP", "TYPE") for p in IGNORED_PREFIXES)
        )
        return [("UNPARSEABLE", repr(e), "", lines)]
    out = []
    for fam in families:
        samples = []
        for s in fam.samples:
            value = _zero_or_not(s.value) if fam.name in PUSH_TIME_FAMILIES else _fmt(s.value)
            samples.append((s.name, tuple(sorted(s.labels.items())), value, s.timestamp))
        if fam.name.startswith(IGNORED_PREFIXES):
            samples = [s for s in samples if any(k == "job" for k, _ in s[1])]
            if not samples:
                continue
        doc = fam.documentation
        if fam.name in own_help and doc == own_help[fam.name]:
            doc = "<the gateway's own HELP>"
        if fam.name in help_choices and doc in help_choices[fam.name]:
            doc = f"<any of {help_choices[fam.name]!r}>"
        out.append((fam.name, fam.type, doc, samples))
    return out


def normalise_api(payload):
    """/api/v1/metrics without timestamps, groups and metrics sorted."""
    if not isinstance(payload, dict):
        return {"INVALID": repr(payload)[:500]}
    data = payload.get("data")
    res = {"status": payload.get("status"), "groups": None}
    if not isinstance(data, list):
        res["groups"] = repr(data)[:500]
        return res
    groups = []
    for g in data:
        ng = {
            "labels": g.get("labels"),
            "last_push_successful": g.get("last_push_successful", "<missing>"),
            "families": {},
        }
        for name, fam in g.items():
            if name in ("labels", "last_push_successful"):
                continue
            if not isinstance(fam, dict):
                ng["families"][name] = repr(fam)
                continue
            nf = {k: v for k, v in fam.items() if k not in ("time_stamp", "metrics")}
            nf["has_time_stamp"] = "time_stamp" in fam
            metrics = fam.get("metrics")
            if isinstance(metrics, list):
                if name in PUSH_TIME_FAMILIES:
                    metrics = [
                        {**m, "value": _zero_or_not(m.get("value"))} if isinstance(m, dict) else m
                        for m in metrics
                    ]
                metrics = sorted(metrics, key=lambda m: json.dumps(m, sort_keys=True))
            nf["metrics"] = metrics
            ng["families"][name] = nf
        groups.append(ng)
    groups.sort(key=lambda g: json.dumps(g["labels"], sort_keys=True))
    res["groups"] = groups
    return res


def own_help(server: ServerProcess) -> dict[str, str]:
    """HELP of the gateway's own families, from a scrape while nothing is pushed.

    Cached on the server object; call before a scenario's first push.
    """
    cached = getattr(server, "_own_help", None)
    if cached is None:
        cached = {}
        st, _, body = http_request("GET", server.url + server.prefix + "/metrics")
        if st == 200:
            try:
                for fam in text_string_to_metric_families(body.decode("utf-8", "replace")):
                    if fam.name.startswith(IGNORED_PREFIXES):
                        cached[fam.name] = fam.documentation
            except Exception:  # noqa: BLE001 (a broken scrape shows up elsewhere)
                pass
        server._own_help = cached
    return cached


def fetch_state(server: ServerProcess, help_any_of=()):
    """(/metrics status, normalised exposition, /api/v1/metrics status, normalised API)."""
    base = server.url + server.prefix
    st, _, body = http_request("GET", base + "/metrics")
    expo = (normalise_exposition(body.decode("utf-8", "replace"), help_any_of, own_help(server))
            if st == 200 else None)
    ast, _, abody = http_request("GET", base + "/api/v1/metrics")
    try:
        api = normalise_api(json.loads(abody))
    except ValueError:
        api = {"INVALID JSON": abody[:300].decode("utf-8", "replace")}
    return {"metrics_status": st, "metrics": expo, "api_status": ast, "api": api}


def _content_view(state):
    """State with families sorted: order-insensitive content comparison."""
    expo = state["metrics"]
    if expo is not None:
        expo = sorted(
            ((n, t, h, sorted(s, key=repr)) for n, t, h, s in expo), key=repr
        )
    return {**state, "metrics": expo}


def _labels_str(labels) -> str:
    items = labels.items() if isinstance(labels, dict) else labels
    return "{" + ",".join(f"{k}={v!r}" for k, v in sorted(items)) + "}"


def _flatten(state) -> list[str]:
    """One line per fact, for readable diffs of a state."""
    lines = [f"/metrics status {state['metrics_status']}"]
    for name, typ, doc, samples in state["metrics"] or []:
        lines.append(f"/metrics family {name} type={typ} help={doc!r}")
        for sname, labels, value, ts in samples:
            lines.append(f"/metrics   {sname}{_labels_str(labels)} {value}"
                         + (f" @{ts}" if ts is not None else ""))
    api = state["api"]
    lines.append(f"api status {state['api_status']} {api.get('status')!r}")
    groups = api.get("groups")
    if not isinstance(groups, list):
        lines.append(f"api data {groups!r} {api}")
        return lines
    for g in groups:
        key = _labels_str(g["labels"] or {})
        lines.append(f"api group {key} last_push_successful={g['last_push_successful']!r}")
        for fname, fam in sorted(g["families"].items()):
            if not isinstance(fam, dict):
                lines.append(f"api group {key} {fname}: {fam}")
                continue
            meta = {k: v for k, v in fam.items() if k != "metrics"}
            lines.append(f"api group {key} {fname}: {json.dumps(meta, sort_keys=True)}")
            for m in fam.get("metrics") or []:
                lines.append(f"api group {key} {fname}:   {json.dumps(m, sort_keys=True)}")
    return lines


def _norm_ctype(value):
    """Media type plus sorted parameters, without charset and escaping."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(";")]
    params = sorted(
        p.replace(" ", "") for p in parts[1:]
        if p and p.split("=")[0].strip().lower() not in ("charset", "escaping")
    )
    return "; ".join([parts[0].lower(), *params])


def _order_view(expo):
    """Families in order; samples as (name, label count, label values): Go sorts
    metrics by label count, then label values (label names sorted); ties are
    in arbitrary order."""
    return [(n, [(s[0], len(s[1]), tuple(v for _, v in s[1])) for s in ss])
            for n, _, _, ss in expo]


def _line_diff(a: list[str], b: list[str]) -> str:
    return "\n".join(difflib.unified_diff(a, b, "official", CANDIDATE, lineterm="", n=1))


def _diff(a, b, name_a="official", name_b=CANDIDATE) -> str:
    fa = pprint.pformat(a, width=110).splitlines()
    fb = pprint.pformat(b, width=110).splitlines()
    return "\n".join(difflib.unified_diff(fa, fb, name_a, name_b, lineterm="", n=2))


# --------------------------------------------------------------------------
# scenario runner
# --------------------------------------------------------------------------
class Runner:
    def __init__(self, scenario: Scenario, official: ServerProcess, candidate: ServerProcess):
        self.scenario = scenario
        self.off = official
        self.cand = candidate
        self.problems: list[str] = []
        self.transcript: list[str] = []
        self._cand_output_start = len(candidate.output())
        own_help(official)  # cache the gateways' own HELP strings before any push
        own_help(candidate)

    def problem(self, step_no, msg):
        self.problems.append(f"step {step_no}: {msg}")

    def send(self, server: ServerProcess, req: Req):
        body = req.body if (req.body or req.method in ("PUT", "POST", "PATCH")) else None
        return http_request(req.method, server.url + req.path, body=body, headers=dict(req.headers))

    def do_request(self, i, req: Req):
        ost, ohdr, obody = self.send(self.off, req.official_override or req)
        try:
            # In self-check mode the candidate is the official 1.5.1 too.
            cst, chdr, cbody = self.send(self.cand, (req.official_override or req) if SELFCHECK else req)
        except OSError as e:
            self.transcript.append(f"  {i}. {req.describe()}\n     official: {ost} {obody[:200]!r}\n"
                                   f"     {CANDIDATE}: CONNECTION ERROR {e!r}")
            self.problem(i, f"{req.describe()}: {CANDIDATE} connection error {e!r}")
            return
        self.transcript.append(
            f"  {i}. {req.describe()}\n     official: {ost} {obody[:200]!r}\n"
            f"     {CANDIDATE}: {cst} {cbody[:200]!r}")
        what = req.describe()
        if req.official_override is not None:
            self.transcript[-1] += f"\n     (official was sent: {req.official_override.describe()})"
        if ost != cst:
            self.problem(i, f"{what}: status official={ost} {CANDIDATE}={cst} "
                            f"(official body {obody[:200]!r}, {CANDIDATE} body {cbody[:200]!r})")
            return
        if 300 <= ost < 400:
            oloc, cloc = ohdr.get("Location"), chdr.get("Location")
            if oloc != cloc:
                self.problem(i, f"{what}: Location official={oloc!r} {CANDIDATE}={cloc!r}")
        octype = ohdr.get("Content-Type") or ""
        cctype = chdr.get("Content-Type") or ""
        if req.body_check == "exact":
            if obody != cbody:
                self.problem(i, f"{what}: body official={obody!r} {CANDIDATE}={cbody!r}")
        elif req.body_check == "auto" and req.method != "HEAD":
            if ost >= 400 and obody and octype.startswith("text/plain"):
                if not cbody.strip():
                    self.problem(i, f"{what}: {CANDIDATE} error body is empty "
                                    f"(official: {obody!r})")
                if not cctype.startswith("text/plain"):
                    self.problem(i, f"{what}: {CANDIDATE} error Content-Type {cctype!r}, "
                                    f"official {octype!r}")
            elif not obody and cbody:
                self.problem(i, f"{what}: official body is empty, {CANDIDATE} body {cbody[:200]!r}")
        for h in req.compare_headers:
            ov, cv = ohdr.get(h), chdr.get(h)
            if h.lower() == "content-type":
                ov, cv = _norm_ctype(ov), _norm_ctype(cv)
            if ov != cv:
                self.problem(i, f"{what}: header {h} official={ov!r} {CANDIDATE}={cv!r}")
        if req.contains is not None:
            assert req.contains.encode() in obody, (
                f"scenario bug: official body {obody!r} lacks {req.contains!r}")
            if req.contains.encode() not in cbody:
                self.problem(i, f"{what}: {CANDIDATE} body {cbody!r} lacks {req.contains!r} "
                                f"(official: {obody!r})")

    def compare_state(self, i, label):
        # Poll until both agree; give up when the deadline passes or when
        # neither side has changed for a few polls (a lasting difference).
        deadline = time.monotonic() + SETTLE_SECONDS
        previous, stable = None, 0
        while True:
            o = fetch_state(self.off, self.scenario.help_any_of)
            c = fetch_state(self.cand, self.scenario.help_any_of)
            ov, cv = _content_view(o), _content_view(c)
            if ov == cv:
                break
            stable = stable + 1 if (ov, cv) == previous else 0
            previous = (ov, cv)
            if time.monotonic() > deadline or stable >= STABLE_POLLS:
                self.transcript.append(f"  {i}. {label}: DIFFERENT")
                self.problem(i, f"{label}: state differs (- official, + {CANDIDATE}):\n"
                                + _line_diff(_flatten(ov), _flatten(cv)))
                return
            time.sleep(0.05)
        self.transcript.append(f"  {i}. {label}: same")
        # Content agrees; the official also sorts families by name and
        # samples by their label values (ties in arbitrary order, hence the
        # comparison of label values only).
        if o["metrics"] is not None:
            oo, co = _order_view(o["metrics"]), _order_view(c["metrics"])
            if oo != co:
                self.problem(i, f"{label}: /metrics order differs (same content):\n"
                                + _diff(oo, co))

    def expect_exit(self, i, step: ExpectExit):
        codes = []
        for s in (self.off, self.cand):
            try:
                codes.append(s.wait(timeout=step.timeout))
            except Exception:
                codes.append(f"still running after {step.timeout}s")
                s.stop()
        self.transcript.append(f"  {i}. exit codes official={codes[0]} {CANDIDATE}={codes[1]}")
        if codes[0] != codes[1]:
            self.problem(i, f"exit code official={codes[0]} {CANDIDATE}={codes[1]}")

    def _candidate_log(self) -> str:
        out = self.cand.output()[self._cand_output_start:]
        if "Traceback" not in out and "ERROR" not in out and "error" not in out:
            return ""
        if len(out) > 4000:
            out = "...\n" + out[-4000:]
        return f"\n\n{CANDIDATE} output during this scenario:\n{out}"

    def run(self):
        exited = False
        for i, step in enumerate(self.scenario.steps, 1):
            if isinstance(step, Req):
                self.do_request(i, step)
            elif isinstance(step, Snapshot):
                self.compare_state(i, "snapshot")
            elif isinstance(step, ExpectExit):
                self.expect_exit(i, step)
                exited = True
            else:  # pragma: no cover
                raise TypeError(step)
        if not exited and not self.cand.alive():
            self.problem(len(self.scenario.steps), f"{CANDIDATE} process died "
                                                   f"(exit code {self.cand.stop()})")
            exited = True
        if self.scenario.compare_state and not exited:
            self.compare_state(len(self.scenario.steps) + 1, "final state")
        if self.problems:
            pytest.fail(
                f"scenario {self.scenario.id!r}: {len(self.problems)} difference(s) between the "
                f"official Pushgateway and {CANDIDATE}\n"
                + (f"({self.scenario.doc})\n" if self.scenario.doc else "")
                + "\n".join(self.problems)
                + "\n\ntranscript:\n" + "\n".join(self.transcript)
                + self._candidate_log(),
                pytrace=False,
            )
        return self.transcript


# --------------------------------------------------------------------------
# fixtures and the test
# --------------------------------------------------------------------------
def _start_pair(*flags):
    """Start official and candidate concurrently with the same flags."""
    results = {}

    def run(key, fn):
        try:
            results[key] = fn(*flags)
        except BaseException as e:  # noqa: BLE001 (re-raised below)
            results[key] = e

    threads = [threading.Thread(target=run, args=("off", start_official)),
               threading.Thread(target=run, args=("cand", start_candidate))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [v for v in results.values() if isinstance(v, BaseException)]
    if errors:
        for v in results.values():
            if isinstance(v, ServerProcess):
                v.close()
        raise errors[0]
    return results["off"], results["cand"]


class SharedPair:
    """Official + candidate with --web.enable-admin-api, restarted if one died."""

    FLAGS = ("--web.enable-admin-api",)

    def __init__(self):
        self.off = self.cand = None

    def get(self):
        problems = []
        for attr, starter in (("off", start_official), ("cand", start_candidate)):
            server = getattr(self, attr)
            if server is not None and not server.alive():
                rc = server.stop()
                problems.append(f"{server.name} (shared) had died with exit code {rc}; "
                                f"output tail:\n{server.output()[-3000:]}")
                server.close()
                server = None
            if server is None:
                setattr(self, attr, starter(*self.FLAGS))
        return self.off, self.cand, problems

    def close(self):
        for server in (self.off, self.cand):
            if server is not None:
                server.close()


@pytest.fixture(scope="module")
def shared_pair(official_bin):
    pair = SharedPair()
    yield pair
    pair.close()


@pytest.mark.parametrize("scenario", [
    pytest.param(s, id=s.id, marks=pytest.mark.xfail(strict=True, reason=s.pending) if s.pending else ())
    for s in SCENARIOS
])
def test_differential(scenario: Scenario, request, official_bin):
    if scenario.needs_fresh_servers:
        off, cand = _start_pair(*scenario.flags)
        try:
            Runner(scenario, off, cand).run()
        finally:
            off.close()
            cand.close()
    else:
        off, cand, problems = request.getfixturevalue("shared_pair").get()
        if problems:  # a previous scenario killed a server: say so, then go on
            pytest.fail("\n".join(problems), pytrace=False)
        wipe_and_wait(off)
        wipe_and_wait(cand)
        Runner(scenario, off, cand).run()


def test_scenario_count():
    assert len(SCENARIOS) >= 45


# --------------------------------------------------------------------------
# the harness itself
# --------------------------------------------------------------------------
def test_require_peer_missing_skips_outside_ci(monkeypatch):
    from servers import require_peer

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as info:
        require_peer("no-such-peer", "/nonexistent/no-such-peer")
    assert "PEER MISSING" in str(info.value)
    assert "apt-get install no-such-peer" in str(info.value)


def test_require_peer_missing_fails_under_ci(monkeypatch):
    from servers import require_peer

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as info:
        require_peer("no-such-peer", "/nonexistent/no-such-peer")
    assert "PEER MISSING" in str(info.value)


def test_official_process_start_stop(official_bin):
    with start_official() as server:
        status, _, body = http_request("GET", server.url + "/-/healthy")
        assert (status, body) == (200, b"OK")
        assert server.alive()
    assert not server.alive()
    assert server.returncode == 0, server.output()  # graceful exit on SIGTERM
