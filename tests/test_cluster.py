"""A pushgw cluster: replicas (separate processes) sharing one real PostgreSQL.

Every server here is real: PostgreSQL from Debian (tests/postgres.py), pushgw
processes, HAProxy. Load loops are bounded in count and in time. Longer runs
outside CI: ``PUSHGW_CLUSTER_KILL_CYCLES=200``, ``PUSHGW_CLUSTER_SECONDS=60``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from postgres import fail_over, start_standby
from pushgw.storage.checkpoint import CHECKPOINT_INTERVAL
from pushgw.storage.postgres import PostgresDatabase
from pushgw.storage.rows import grouping_labels
from servers import ServerProcess, start_pushgw

KILL_CYCLES = int(os.environ.get("PUSHGW_CLUSTER_KILL_CYCLES", "20"))
LOAD_SECONDS = float(os.environ.get("PUSHGW_CLUSTER_SECONDS", "6"))
TIMEOUT = 10  # seconds, per request


def replica(url: str, *flags: str, env: dict[str, str] | None = None) -> ServerProcess:
    return start_pushgw(f"--persistence.url={url}", "--web.enable-admin-api", *flags, env=env,
                        ready_timeout=30)


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def pushed(server: ServerProcess, names=None) -> dict[tuple, float]:
    """The pushed samples of /metrics: (name, sorted labels) -> value."""
    text = requests.get(server.url + "/metrics", timeout=TIMEOUT).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(("pushgateway_", "process_", "python_", "push_")):
                continue
            if names is None or s.name in names:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value_on(server: ServerProcess, job: str, name: str) -> float | None:
    """One sample of one group, read through the JSON API (no catch-up skipped)."""
    r = requests.get(server.url + "/api/v1/metrics", params={"match[]": f'{{job="{job}"}}'},
                     timeout=TIMEOUT)
    r.raise_for_status()
    for group in r.json()["data"]:
        if name in group:
            return float(group[name]["metrics"][0]["value"])
    return None


def metric_value(server: ServerProcess, name: str) -> float:
    """One of the replica's own metrics (unlabelled)."""
    text = requests.get(server.url + "/metrics", timeout=TIMEOUT).text
    return next(s.value for family in text_string_to_metric_families(text)
                for s in family.samples if s.name == name)


def stored_jobs(url: str) -> set[str]:
    """The jobs of every group the database holds: the checkpoint and the log after it."""
    async def load() -> list:
        engine = await PostgresDatabase.open(url)
        try:
            return await engine.load()
        finally:
            await engine.close()

    return {dict(grouping_labels(row.grouping))["job"] for row in asyncio.run(load())}


@pytest.fixture
def cluster(postgres_url):
    servers: list[ServerProcess] = []

    def start(n: int = 1, *flags: str, env=None) -> list[ServerProcess]:
        new = [replica(postgres_url, *flags, env=env) for _ in range(n)]
        servers.extend(new)
        return new

    yield start
    for server in servers:
        server.close()


# --- configuration and schema -------------------------------------------------


def run_pushgw(*args: str, env=None, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pushgw", "--web.listen-address=127.0.0.1:0", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_file_and_url_together_refuse_start(tmp_path, postgres_url):
    result = run_pushgw(f"--persistence.file={tmp_path}/x.db", f"--persistence.url={postgres_url}")
    assert result.returncode != 0
    assert "--persistence.file and --persistence.url exclude each other" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_foreign_tables_and_newer_schema_refuse_start(postgres_server):
    url = postgres_server.create_database()
    db = database_name(url)
    postgres_server.psql("CREATE TABLE invoices (id int); INSERT INTO invoices VALUES (7);", database=db)
    result = run_pushgw(f"--persistence.url={url}")
    assert result.returncode == 1
    assert "tables that are not pushgw's (invoices)" in result.stderr
    assert "7" in postgres_server.psql("SELECT id FROM invoices", database=db)
    assert "pushgw_head" not in postgres_server.psql(r"SELECT tablename FROM pg_tables", database=db)

    url = postgres_server.create_database()
    with replica(url):
        pass  # creates the schema
    db = database_name(url)
    postgres_server.psql("UPDATE pushgw_meta SET value = '99' WHERE key = 'schema_version'", database=db)
    result = run_pushgw(f"--persistence.url={url}")
    assert result.returncode == 1
    assert "schema version 99, newer than this pushgw understands" in result.stderr
    assert "99" in postgres_server.psql("SELECT value FROM pushgw_meta", database=db)


def test_no_right_to_create_the_schema_refuses_start(postgres_server):
    """A database the user may connect to but not create tables in: a clear refusal,
    not retries forever (PostgreSQL 15 grants CREATE on public to its owner only)."""
    url = postgres_server.create_database(owner=postgres_server.password_user)
    other = postgres_server.url_for(database_name(url))  # as app_user, who does not own it
    result = run_pushgw(f"--persistence.url={other}")
    assert result.returncode == 1
    assert "cannot use the PostgreSQL database" in result.stderr
    assert "permission denied" in result.stderr
    assert "pushgw_head" not in postgres_server.psql("SELECT tablename FROM pg_tables", database=database_name(url))


def test_schema_1_is_upgraded_with_its_groups(postgres_server):
    """Schema 1 (a log entry per group, no functions) as an older pushgw left it."""
    from pushgw.storage.postgres import MIGRATIONS, SCHEMA_VERSION

    url = postgres_server.create_database()
    db = database_name(url)
    postgres_server.psql(MIGRATIONS[0] + """
        INSERT INTO pushgw_meta VALUES ('schema_version', '1');
        UPDATE pushgw_head SET position = 2;
        INSERT INTO pushgw_groups VALUES ('[["job","old"]]', 1700000000, 0, 0, NULL);
        INSERT INTO pushgw_families VALUES
            ('[["job","old"]]', 'm', 'gauge', '', 1700000000, convert_to('m{instance="",job="old"} 7' || E'\\n', 'UTF8'), '', false, NULL);
        INSERT INTO pushgw_log VALUES (1, '[["job","old"]]', 1700000000), (2, '[["job","old"]]', 1700000000);
    """, database=db, user=postgres_server.app_user)
    with replica(url) as a, replica(url) as b:
        assert pushed(a) == {("m", (("instance", ""), ("job", "old"))): 7.0}
        assert requests.put(a.url + "/metrics/job/new", data=b"n 1\n", timeout=TIMEOUT).status_code == 200
        assert value_on(b, "new", "n") == 1.0 and value_on(b, "old", "m") == 7.0
    assert postgres_server.psql("SELECT value FROM pushgw_meta", database=db).strip() == str(SCHEMA_VERSION)
    assert "changes" in postgres_server.psql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'pushgw_log'", database=db)
    # The checkpoint started at the old head (2), where the tables were, and moved on.
    assert int(postgres_server.psql("SELECT position FROM pushgw_checkpoint", database=db)) >= 2


def test_password_from_pgpassfile(postgres_server, tmp_path):
    url = postgres_server.create_database(owner=postgres_server.password_user)
    db = database_name(url)
    secret_url = postgres_server.url_for(database=db, user=postgres_server.password_user)
    assert postgres_server.password not in secret_url
    bad = run_pushgw(f"--persistence.url={secret_url}", env={"PGPASSWORD": "wrong"}, timeout=20)
    assert bad.returncode == 1 and "password authentication failed" in bad.stderr
    passfile = postgres_server.write_passfile(tmp_path / "pgpass")
    with replica(secret_url, env={"PGPASSFILE": str(passfile)}) as gw:
        assert requests.put(gw.url + "/metrics/job/j", data=b"m 1\n", timeout=TIMEOUT).status_code == 200
        assert postgres_server.password not in gw.output()


# --- linearizable pushes, fresh reads -------------------------------------------


def test_random_operations_on_three_replicas_match_a_model(cluster):
    """Clients own disjoint groups and send random PUT/POST/DELETE round-robin
    over three replicas; afterwards every replica shows exactly the model
    built from the acknowledged operations."""
    replicas = cluster(3)
    model: dict[str, dict[str, float]] = {}  # job -> family -> value
    lock = threading.Lock()
    failures: list[str] = []
    deadline = time.monotonic() + LOAD_SECONDS

    def client(c: int) -> None:
        rng = random.Random(c)
        jobs = [f"c{c}g{g}" for g in range(5)]
        own: dict[str, dict[str, float]] = {}
        for i in range(2000):
            if time.monotonic() > deadline:
                break
            server = replicas[i % 3]
            job = rng.choice(jobs)
            method = rng.choice(["PUT", "POST", "POST", "DELETE"])
            families = {f"f{k}": float(rng.randint(0, 10**6)) for k in rng.sample(range(4), rng.randint(1, 3))}
            body = "".join(f"# TYPE {n} gauge\n{n} {v}\n" for n, v in families.items()).encode()
            url = f"{server.url}/metrics/job/{job}"
            r = requests.request(method, url, data=None if method == "DELETE" else body, timeout=TIMEOUT)
            if r.status_code not in (200, 202):
                failures.append(f"{method} {url}: {r.status_code} {r.text}")
                return
            if method == "DELETE":
                own.pop(job, None)
            elif method == "PUT":
                own[job] = dict(families)
            else:
                own.setdefault(job, {}).update(families)
        with lock:
            model.update(own)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]
    expected = {
        (name, (("instance", ""), ("job", job))): value
        for job, families in model.items() for name, value in families.items()
    }
    assert expected
    for server in replicas:
        assert pushed(server) == expected


def test_conflicting_pushes_at_once_exactly_one_wins(cluster):
    """The same family as counter on one replica and gauge on another, at the same instant."""
    a, b = cluster(2)
    rounds = 40
    for n in range(rounds):
        barrier = threading.Barrier(2)
        codes: dict[str, int] = {}

        def push(server: ServerProcess, kind: str, job: str) -> None:
            body = f"# TYPE conflict_{n} {kind}\nconflict_{n} 1\n".encode()
            barrier.wait()
            codes[kind] = requests.put(f"{server.url}/metrics/job/{job}", data=body, timeout=TIMEOUT).status_code

        threads = [threading.Thread(target=push, args=(a, "counter", f"x{n}")),
                   threading.Thread(target=push, args=(b, "gauge", f"y{n}"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes.values()) == [200, 400], (n, codes)
    for server in (a, b):  # and every replica agrees which one it was
        types = {f.name: f.type for f in text_string_to_metric_families(
            requests.get(server.url + "/metrics", timeout=TIMEOUT).text) if f.name.startswith("conflict_")}
        assert len(types) == rounds
        assert types == {f.name: f.type for f in text_string_to_metric_families(
            requests.get(a.url + "/metrics", timeout=TIMEOUT).text) if f.name.startswith("conflict_")}


def test_read_on_another_replica_right_after_the_200_is_never_stale(cluster):
    a, b = cluster(2)
    session_a, session_b = requests.Session(), requests.Session()
    for i in range(1000):
        r = session_a.put(a.url + "/metrics/job/ryw", data=f"seq {i}\n".encode(), timeout=TIMEOUT)
        assert r.status_code == 200
        r = session_b.get(b.url + "/api/v1/metrics", params={"match[]": '{job="ryw"}'}, timeout=TIMEOUT)
        assert float(r.json()["data"][0]["seq"]["metrics"][0]["value"]) == i, i


def test_late_replica_catches_up_and_ttl_expiry_is_seen_everywhere(cluster, postgres_server, postgres_url):
    (a,) = cluster(1)
    body = "".join(f'm{{i="{i}"}} {i}\n' for i in range(200)).encode()
    for g in range(50):
        assert requests.put(f"{a.url}/metrics/job/g{g}", data=body, timeout=TIMEOUT).status_code == 200
    r = requests.put(a.url + "/metrics/job/shortlived", data=b"x 1\n",
                     headers={"Pushgateway-TTL": "2s"}, timeout=TIMEOUT)
    assert r.status_code == 200
    (b,) = cluster(1)  # started late: ready only once it holds everything
    assert pushed(b) == pushed(a)
    assert value_on(b, "shortlived", "x") == 1
    time.sleep(2.2)
    for server in (a, b):
        assert value_on(server, "shortlived", "x") is None
    # Deleted from the state in the database (what a starting replica reads, expired or
    # not) at once, and from the tables at the next checkpoint.
    deadline = time.monotonic() + 5
    while "shortlived" in stored_jobs(postgres_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "shortlived" not in stored_jobs(postgres_url), "the expired group is still in the database"
    db = database_name(postgres_url)
    deadline = time.monotonic() + CHECKPOINT_INTERVAL + 5
    while time.monotonic() < deadline:
        tables = postgres_server.psql("SELECT count(*) FROM pushgw_groups WHERE grouping LIKE '%\"g%'",
                                      database=db)
        if tables.strip() == "50":
            break
        time.sleep(0.2)
    assert tables.strip() == "50", "no checkpoint wrote the groups into the tables"
    assert "shortlived" not in postgres_server.psql("SELECT grouping FROM pushgw_groups", database=db)
    checkpoint = int(postgres_server.psql("SELECT position FROM pushgw_checkpoint", database=db))
    known = [metric_value(server, "pushgateway_replication_checkpoint_position") for server in (a, b)]
    assert max(known) == checkpoint


def test_delete_by_selector_and_wipe_reach_every_replica(cluster):
    a, b = cluster(2)
    for job in ("keep", "drop1", "drop2"):
        assert requests.put(f"{b.url}/metrics/job/{job}", data=b"m 1\n", timeout=TIMEOUT).status_code == 200
    r = requests.delete(a.url + "/api/v1/admin/groups", params={"match[]": '{job=~"drop.*"}'}, timeout=TIMEOUT)
    assert r.json()["data"]["deleted"] == 2
    assert {g["labels"]["job"] for g in requests.get(b.url + "/api/v1/metrics", timeout=TIMEOUT).json()["data"]} == {"keep"}
    assert requests.put(a.url + "/api/v1/admin/wipe", timeout=TIMEOUT).status_code == 202
    assert requests.get(b.url + "/api/v1/metrics", timeout=TIMEOUT).json()["data"] == []


def test_store_limits_are_global(cluster):
    a, b = cluster(2, "--store.max-groups=3")
    for server, job in ((a, "one"), (b, "two"), (a, "three")):
        assert requests.put(f"{server.url}/metrics/job/{job}", data=b"m 1\n", timeout=TIMEOUT).status_code == 200
    for server in (a, b):
        r = requests.put(f"{server.url}/metrics/job/four", data=b"m 1\n", timeout=TIMEOUT)
        assert r.status_code == 429, r.text
    assert requests.delete(f"{b.url}/metrics/job/one", timeout=TIMEOUT).status_code == 202
    assert requests.put(f"{a.url}/metrics/job/four", data=b"m 1\n", timeout=TIMEOUT).status_code == 200


# --- faults ------------------------------------------------------------------------


class Load:
    """Clients pushing new values to their own groups through live replicas,
    recording what was acknowledged and what may have landed unanswered."""

    def __init__(self, servers: list[ServerProcess], clients: int = 4, groups: int = 8):
        self.servers = servers
        self.acked: dict[str, int] = {}  # job -> last acknowledged value
        self.unsure: dict[str, set[int]] = defaultdict(set)  # values sent after it, unanswered
        self.answers: dict[int, int] = defaultdict(int)
        self.read_5xx: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._push, args=(c, groups)) for c in range(clients)]
        self._threads.append(threading.Thread(target=self._read))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _push(self, c: int, groups: int) -> None:
        session = requests.Session()
        seq = 0
        while not self._stop.is_set() and seq < 100_000:
            seq += 1
            job = f"load{c}_{seq % groups}"
            server = random.choice(self.servers)
            try:
                r = session.put(f"{server.url}/metrics/job/{job}", data=f"v {seq}\n".encode(), timeout=5)
            except requests.RequestException:
                self.unsure[job].add(seq)
                continue
            self.answers[r.status_code] += 1
            if r.status_code == 200:
                self.acked[job] = seq
                self.unsure[job].clear()
            elif r.status_code >= 500:
                self.unsure[job].add(seq)  # a 503 promises nothing was changed; be lenient anyway

    def _read(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            server = random.choice(self.servers)
            try:
                r = session.get(server.url + "/metrics", timeout=5)
            except requests.RequestException:
                continue  # a replica being killed
            if r.status_code >= 500 and server.alive():
                self.read_5xx.append(f"{server.url}: {r.status_code} {r.text[:200]}")
            time.sleep(0.02)

    def check(self, server: ServerProcess) -> int:
        """Every acknowledged push is there (or a later one that went unanswered)."""
        stored = {dict(labels)["job"]: value for (name, labels), value in pushed(server, {"v"}).items()}
        for job, seq in self.acked.items():
            assert stored.get(job) is not None, f"{job}: acknowledged {seq}, stored nothing"
            got = int(stored[job])
            assert got == seq or (got in self.unsure[job] and got > seq), (job, seq, got)
        return len(self.acked)


def test_kill9_replicas_under_load_loses_no_acknowledged_push(cluster):
    servers = cluster(3)
    rng = random.Random(7)
    restarts: list[ServerProcess] = []
    with Load(servers) as load:
        for _ in range(KILL_CYCLES):
            time.sleep(rng.uniform(0.05, 0.4))
            victim = rng.choice(servers)
            os.kill(victim.pid, signal.SIGKILL)
            victim.stop()
            servers.remove(victim)
            fresh = cluster(1)[0]
            restarts.append(fresh)
            servers.append(fresh)
    assert load.answers[200] > KILL_CYCLES * 5
    assert not load.read_5xx, load.read_5xx[:5]
    for server in servers:
        checked = load.check(server)
    assert checked >= 8
    print(f"kill -9 cycles: {KILL_CYCLES}, answers: {dict(load.answers)}, groups checked on "
          f"{len(servers)} replicas: {checked}, lost: 0")
    assert {code for code in load.answers if code >= 500} <= {503}, dict(load.answers)


def test_postgres_down_then_back_under_load(make_postgres):
    pg = make_postgres()
    url = pg.create_database()
    servers = [replica(url) for _ in range(2)]
    try:
        with Load(servers) as load:
            time.sleep(1)
            pg.stop()
            time.sleep(1.5)
            down = dict(load.answers)
            r = requests.put(servers[0].url + "/metrics/job/during", data=b"x 1\n", timeout=TIMEOUT)
            assert r.status_code == 503 and "could not persist" in r.text
            health = requests.get(servers[0].url + "/-/healthy", timeout=TIMEOUT)
            assert health.status_code == 500 and "persistence is failing" in health.text
            assert requests.get(servers[1].url + "/metrics", timeout=TIMEOUT).status_code == 200
            assert requests.get(servers[1].url + "/-/ready", timeout=TIMEOUT).status_code == 200
            pg.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                r = requests.put(servers[0].url + "/metrics/job/after", data=b"x 1\n", timeout=TIMEOUT)
                if r.status_code == 200:
                    break
                time.sleep(0.2)
            assert r.status_code == 200, r.text
            before = load.answers[200]
            time.sleep(1)
            assert load.answers[200] > before  # the load goes on by itself
        assert down.get(503, 0) > 0
        assert not load.read_5xx, load.read_5xx[:5]
        for server in servers:
            assert load.check(server) >= 8
            assert requests.get(server.url + "/-/healthy", timeout=TIMEOUT).status_code == 200
        metrics = requests.get(servers[0].url + "/metrics", timeout=TIMEOUT).text
        assert "pushgateway_database_reconnects_total" in metrics
        reconnects = [line for line in metrics.splitlines()
                      if line.startswith("pushgateway_database_reconnects_total")]
        assert float(reconnects[0].split()[1]) >= 1
    finally:
        for server in servers:
            server.close()


def test_failover_to_a_new_primary_behind_the_same_address(make_postgres):
    primary = make_postgres()
    url = primary.create_database()
    standby = start_standby(primary)
    servers = [replica(url) for _ in range(2)]
    try:
        with Load(servers) as load:
            time.sleep(1)
            fail_over(primary, standby)
            deadline = time.monotonic() + 20
            before = load.answers[200]
            while load.answers[200] < before + 20 and time.monotonic() < deadline:
                time.sleep(0.2)
        assert load.answers[200] >= before + 20, dict(load.answers)
        assert not load.read_5xx
        for server in servers:
            assert load.check(server) >= 8
    finally:
        for server in servers:
            server.close()
        standby.close()


def test_haproxy_in_front_a_killed_replica_costs_only_requests_in_flight(cluster, make_haproxy):
    servers = cluster(3)
    proxy = make_haproxy([("127.0.0.1", s.port) for s in servers])
    proxy.wait_states({"r0": "UP", "r1": "UP", "r2": "UP"})
    errors: list[str] = []
    sent = [0]
    stop = threading.Event()

    def client(c: int) -> None:
        session = requests.Session()
        while not stop.is_set() and sent[0] < 50_000:
            sent[0] += 1
            try:
                r = session.put(f"{proxy.url}/metrics/job/lb{c}", data=f"v {sent[0]}\n".encode(), timeout=5)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")
            except requests.RequestException as err:
                errors.append(repr(err))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    time.sleep(1)
    os.kill(servers[1].pid, signal.SIGKILL)
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    assert sent[0] > 100
    assert len(errors) <= len(threads), errors  # at most one in flight per client
    assert proxy.states()["r1"] != "UP"


# --- pushgw migrate between SQLite and PostgreSQL ----------------------------------


def api_groups(server: ServerProcess) -> list[dict]:
    """/api/v1/metrics in a fixed order (the order of groups is not part of the API)."""
    data = requests.get(server.url + "/api/v1/metrics", timeout=TIMEOUT).json()["data"]
    return sorted(data, key=lambda g: sorted(g["labels"].items()))


def migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pushgw", "migrate", *args],
                          capture_output=True, text=True, timeout=60)


def test_migrate_sqlite_to_postgres_and_back(tmp_path, postgres_server):
    db = tmp_path / "single.db"
    with start_pushgw(f"--persistence.file={db}") as gw:
        for g in range(20):
            body = f'# TYPE m counter\nm{{i="{g}"}} {g}\n'.encode()
            assert requests.put(f"{gw.url}/metrics/job/j{g}/path@base64/Lw==", data=body).status_code == 200
        assert requests.put(gw.url + "/metrics/job/j0", data=b"# TYPE m gauge\nm 1\n").status_code == 400
        before = pushed(gw)
        api_before = api_groups(gw)
    url = postgres_server.create_database()
    with replica(url) as running:  # a replica already on the destination takes the copy in
        result = migrate("--from", str(db), "--to", url)
        assert result.returncode == 0, result.stderr
        assert "migrated 21 groups (20 series)" in result.stdout
        assert pushed(running) == before
        assert api_groups(running) == api_before
        again = migrate("--from", str(db), "--to", url)
        assert again.returncode == 1 and "already holds 21 groups" in again.stderr
        assert pushed(running) == before
    back = tmp_path / "back.db"
    result = migrate("--from", url, "--to", str(back))
    assert result.returncode == 0, result.stderr
    with start_pushgw(f"--persistence.file={back}") as gw:
        assert pushed(gw) == before
        assert api_groups(gw) == api_before


def test_migrate_only_reads_a_postgres_source(tmp_path, postgres_server):
    """A source without our schema holds nothing and stays as it was; an older schema
    is refused, not upgraded behind the replicas' back."""
    from pushgw.storage.postgres import MIGRATIONS

    url = postgres_server.create_database()
    db = database_name(url)
    result = migrate("--from", url, "--to", str(tmp_path / "empty.db"))
    assert result.returncode == 0, result.stderr
    assert "migrated 0 groups" in result.stdout
    assert postgres_server.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                                database=db).strip() == "0"
    postgres_server.psql(MIGRATIONS[0] + "INSERT INTO pushgw_meta VALUES ('schema_version', '1');",
                         database=db, user=postgres_server.app_user)
    result = migrate("--from", url, "--to", str(tmp_path / "old.db"))
    assert result.returncode == 1 and "older pushgw schema version 1" in result.stderr
    assert postgres_server.psql("SELECT value FROM pushgw_meta", database=db).strip() == "1"


# --- the drop-in behaviour holds on a cluster replica ----------------------------------

from differential_scenarios import SCENARIOS  # noqa: E402
from servers import start_official, wipe_and_wait  # noqa: E402
from test_differential import Runner  # noqa: E402

SHARED_SCENARIOS = [s for s in SCENARIOS if not s.needs_fresh_servers and not s.pending]


@pytest.fixture(scope="module")
def cluster_pair(postgres_server, official_bin):
    """The official, and replica A of a two-replica cluster (B follows every change)."""
    url = postgres_server.create_database()
    official = start_official("--web.enable-admin-api")
    a, b = replica(url), replica(url)
    yield official, a, b
    for server in (official, a, b):
        server.close()


@pytest.mark.parametrize("scenario", SHARED_SCENARIOS, ids=[s.id for s in SHARED_SCENARIOS])
def test_differential_on_a_cluster_replica(scenario, cluster_pair):
    official, a, b = cluster_pair
    assert a.alive() and b.alive(), (a.output()[-2000:], b.output()[-2000:])
    wipe_and_wait(official)
    wipe_and_wait(a)
    Runner(scenario, official, a).run()
    assert api_groups(b) == api_groups(a)  # the other replica holds the same state


def test_most_differential_scenarios_run_on_the_cluster():
    assert len(SHARED_SCENARIOS) >= 0.6 * len(SCENARIOS)
