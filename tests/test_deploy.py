"""Packaging and deployment files: Dockerfile, docker-compose.yml, deploy/.

No Docker engine, Kubernetes cluster or systemd runs on the project's
machines, so everything is validated offline:

* the Dockerfile is read and replayed outside Docker: the build stage's COPY
  lines (filtered by .dockerignore) and its single RUN line (the install
  script deploy/docker/install.sh, the one source of truth) run with a
  temporary directory in place of ``/``; the installed ``pushgw`` is then
  started with the image's ENTRYPOINT/CMD and ENV, a metric is pushed and
  scraped back, and the HEALTHCHECK command is run as Docker would;
* ``promtool check config``, ``promtool check rules`` and ``promtool test
  rules`` (Debian package ``prometheus``) for deploy/prometheus/;
* ``docker-compose config`` (Debian package ``docker-compose``) for
  docker-compose.yml, plus cross-checks of its mounts against deploy/;
* the cluster (deploy/cluster/): ``docker-compose config`` of its compose
  file and ``haproxy -c`` (Debian package ``haproxy``) of its haproxy.cfg;
  the Kubernetes cluster manifests (deploy/kubernetes/cluster/) are parsed;
* the Grafana provisioning and dashboard (every PromQL expression is
  syntax-checked by promtool), the Kubernetes manifests (probes, ports,
  volume, security context) and the systemd unit (``systemd-analyze verify``
  where available, parsed in any case).

Missing peers (promtool, docker-compose, haproxy) skip loudly with "PEER MISSING" and
fail under CI=true; scripts/install-peers installs them.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from haproxy import start_haproxy
from servers import REPO_ROOT, ServerProcess, free_port, http_request, require_peer, start_pushgw

from pushgw.config import ConfigError, load_settings, split_listen_address

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_DIR = DEPLOY / "kubernetes"
CLUSTER_DIR = DEPLOY / "cluster"
K8S_CLUSTER_DIR = K8S_DIR / "cluster"
SYSTEMD_UNIT = DEPLOY / "systemd" / "pushgw.service"
INSTALL_SCRIPT = "deploy/docker/install.sh"

DEFAULT_PORT = split_listen_address(load_settings([]).listen_addresses[0])[1]  # 9091
INSTALL_TIMEOUT = 300  # seconds; a warm pip cache makes it ~15 s


def promtool() -> str:
    return require_peer("promtool", shutil.which("promtool") or "/usr/bin/promtool",
                        apt_package="prometheus")


def docker_compose() -> str:
    return require_peer("docker-compose",
                        shutil.which("docker-compose") or "/usr/bin/docker-compose")


def haproxy() -> str:
    return require_peer("haproxy", shutil.which("haproxy") or "/usr/sbin/haproxy")


def run(argv, *, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kwargs)


def settings_for(args: list[str]):
    """pushgw's settings for these flags; fails the test if pushgw rejects them."""
    try:
        return load_settings(args)
    except ConfigError as e:
        pytest.fail(f"pushgw rejects the flags {args!r}: {e}")


# --- Dockerfile ----------------------------------------------------------------

@dataclass
class Instruction:
    name: str  # upper case: FROM, COPY, RUN ...
    args: str  # the rest of the (continued) line
    line: int


@dataclass
class Stage:
    image: str
    alias: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    """Instructions grouped by stage; line continuations joined, comments dropped."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = (pending + stripped).strip()
        pending = ""
        if text:
            name, _, rest = text.partition(" ")
            instructions.append(Instruction(name.upper(), rest.strip(), start))
    assert not pending, "Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for ins in instructions:
        if ins.name == "FROM":
            words = ins.args.split()
            words = [w for w in words if not w.startswith("--platform")]
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], alias))
        else:
            assert stages, f"line {ins.line}: {ins.name} before FROM"
            stages[-1].instructions.append(ins)
    return stages


def exec_form(args: str, what: str) -> list[str]:
    """A JSON-array (exec form) argument; the shell form is refused."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"{what} must use the exec (JSON array) form, got: {args}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), what
    return value


def copy_args(args: str) -> tuple[dict[str, str], list[str], str]:
    """COPY [--opt=value ...] SRC... DEST -> (options, sources, dest)."""
    words = shlex.split(args)
    options = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        options[key] = value
    assert len(words) >= 2, f"COPY needs a source and a destination: {args}"
    return options, words[:-1], words[-1]


def env_pairs(args: str) -> list[tuple[str, str]]:
    """ENV KEY=VALUE ... (the legacy "ENV KEY VALUE" form is refused)."""
    pairs = []
    for word in shlex.split(args):
        key, eq, value = word.partition("=")
        assert eq, f"ENV must use KEY=VALUE pairs: {args}"
        pairs.append((key, value))
    return pairs


def healthcheck_command(args: str) -> tuple[dict[str, str], list[str]]:
    options, _, command = args.partition("CMD ")
    opts = dict(o[2:].partition("=")[::2] for o in options.split())
    return opts, exec_form(command.strip(), "HEALTHCHECK CMD")


def expand_vars(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


# --- .dockerignore ---------------------------------------------------------------

def _ignore_regex(pattern: str) -> re.Pattern:
    pattern = os.path.normpath(pattern.strip().lstrip("/"))
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


class DockerIgnore:
    """.dockerignore semantics: a path is excluded by the last pattern that
    matches it or one of its parent directories; "!" re-includes."""

    def __init__(self, path: Path = DOCKERIGNORE):
        self.rules: list[tuple[bool, re.Pattern, str]] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                negate = line.startswith("!")
                text = line[1:].strip() if negate else line
                self.rules.append((negate, _ignore_regex(text), text))

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negate, rx, _ in self.rules:
            if any(rx.fullmatch(p) for p in prefixes):
                result = not negate
        return result

    def may_reinclude_below(self, rel_dir: str) -> bool:
        return any(negate and text.lstrip("/").startswith(rel_dir + "/")
                   for negate, _, text in self.rules)


def build_context(root: Path = REPO_ROOT) -> set[str]:
    """Relative paths of the files Docker would send as the build context."""
    ignore = DockerIgnore()
    files: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in dirnames:
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if d == ".git" or (ignore.excluded(rel) and not ignore.may_reinclude_below(rel)):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = f"{rel_dir}/{f}" if rel_dir else f
            if not ignore.excluded(rel):
                files.add(rel)
    return files


# --- replaying the image outside Docker ------------------------------------------

def reroot(root: Path, word: str) -> str:
    """An image path (or --flag=/path) -> the same path under root."""
    if word.startswith("/"):
        return str(root) + word
    m = re.fullmatch(r"(--[\w.-]+=)(/.*)", word)
    return m.group(1) + str(root) + m.group(2) if m else word


@dataclass
class Image:
    root: Path  # stands for the image's "/"
    env: dict[str, str]  # process environment (image ENV applied, PATH re-rooted)
    entrypoint: list[str]
    cmd: list[str]
    workdir: str
    user: str
    volumes: list[str]
    exposed: list[str]
    healthcheck: list[str]
    healthcheck_options: dict[str, str]
    install_output: str

    def which(self, program: str) -> str:
        found = shutil.which(program, path=self.env["PATH"])
        assert found, f"{program} not found on the image's PATH {self.env['PATH']}"
        return found

    def argv(self, *extra: str) -> list[str]:
        """ENTRYPOINT + CMD + extra, as `docker run IMAGE extra...` runs it."""
        words = self.entrypoint + (list(extra) if extra else self.cmd)
        return [self.which(words[0])] + [reroot(self.root, w) for w in words[1:]]


def copy_into(root: Path, context: set[str], workdir: str, sources: list[str], dest: str) -> None:
    """Docker's COPY from the build context into root."""
    target = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"
    as_dir = dest.endswith("/") or len(sources) > 1
    for src in sources:
        src = src.rstrip("/").removeprefix("./")
        copied = 0
        for rel in sorted(context):
            if fnmatch.fnmatchcase(rel, src):  # a file (possibly via a glob)
                out = Path(str(root) + target) / Path(rel).name if as_dir else Path(str(root) + target)
            else:
                parts = rel.split("/")
                base = next((n for n in range(1, len(parts))
                             if fnmatch.fnmatchcase("/".join(parts[:n]), src)), None)
                if base is None:
                    continue  # not under a directory matched by src
                out = Path(str(root) + target) / "/".join(parts[base:])
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / rel, out)
            copied += 1
        if not copied and not any(c in src for c in "*?["):
            pytest.fail(f"COPY {src}: not in the build context (missing, or excluded by .dockerignore)")


def replay_image(root: Path) -> Image:
    """Build the image's file system under root, as the Dockerfile does."""
    stages = parse_dockerfile()
    build, final = stages[0], stages[-1]
    context = build_context()
    env = dict(os.environ)
    # The build stage: only WORKDIR, COPY, ENV and the install RUN line.
    workdir, outputs = "/", []
    for ins in build.instructions:
        if ins.name == "WORKDIR":
            workdir = ins.args
            Path(str(root) + workdir).mkdir(parents=True, exist_ok=True)
        elif ins.name == "COPY":
            options, sources, dest = copy_args(ins.args)
            assert "from" not in options, f"line {ins.line}: build stage copies from another stage"
            copy_into(root, context, workdir, sources, dest)
        elif ins.name == "ENV":
            env.update((k, expand_vars(v, env)) for k, v in env_pairs(ins.args))
        elif ins.name == "RUN":
            words = shlex.split(ins.args)
            assert not set(words) & {"&&", "||", ";", "|"}, \
                f"line {ins.line}: keep the build RUN to one plain command: {ins.args}"
            proc = run([reroot(root, w) for w in words], cwd=str(root) + workdir,
                       env=dict(env, PYTHON=sys.executable), timeout=INSTALL_TIMEOUT)
            outputs.append(proc.stdout + proc.stderr)
            assert proc.returncode == 0, f"RUN {ins.args} failed:\n{proc.stdout}\n{proc.stderr}"
        elif ins.name not in ("ARG", "LABEL"):
            pytest.fail(f"line {ins.line}: {ins.name} in the build stage cannot be replayed")
    # The final stage: file system and runtime metadata; its RUN lines only
    # prepare /data for Docker (created here by WORKDIR/VOLUME).
    image_env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
    meta: dict = {"entrypoint": [], "cmd": [], "workdir": "/", "user": "root",
                  "volumes": [], "exposed": [], "hc": ({}, [])}
    for ins in final.instructions:
        if ins.name == "COPY":
            options, sources, dest = copy_args(ins.args)
            if "from" in options:
                assert options["from"] == build.alias, f"line {ins.line}: unknown stage"
                assert len(sources) == 1 and sources[0].rstrip("/") == dest.rstrip("/"), \
                    f"line {ins.line}: the venv must keep its path (venvs are not relocatable)"
                assert Path(str(root) + dest).exists(), f"line {ins.line}: {dest} was not built"
            else:
                copy_into(root, context, meta["workdir"], sources, dest)
        elif ins.name == "ENV":
            for key, value in env_pairs(ins.args):
                if key == "PATH":
                    value = ":".join(reroot(root, p) if p.startswith("/") else p
                                     for p in value.split(":"))
                image_env[key] = expand_vars(value, image_env)
        elif ins.name == "WORKDIR":
            meta["workdir"] = ins.args
            Path(str(root) + ins.args).mkdir(parents=True, exist_ok=True)
        elif ins.name == "VOLUME":
            vols = exec_form(ins.args, "VOLUME") if ins.args.startswith("[") else ins.args.split()
            meta["volumes"] += vols
            for v in vols:
                Path(str(root) + v).mkdir(parents=True, exist_ok=True)
        elif ins.name == "EXPOSE":
            meta["exposed"] += ins.args.split()
        elif ins.name == "USER":
            meta["user"] = ins.args
        elif ins.name == "ENTRYPOINT":
            meta["entrypoint"] = exec_form(ins.args, "ENTRYPOINT")
            meta["cmd"] = []  # Docker resets CMD when ENTRYPOINT is set
        elif ins.name == "CMD":
            meta["cmd"] = exec_form(ins.args, "CMD")
        elif ins.name == "HEALTHCHECK":
            meta["hc"] = healthcheck_command(ins.args)
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("PYTHON", "VIRTUAL_ENV")):
            del env[key]  # nothing of the test's own interpreter leaks in
    env.update(image_env)
    # The image's config file points into the image: re-root its paths too.
    for ins in final.of("ENTRYPOINT"):
        for word in exec_form(ins.args, "ENTRYPOINT"):
            if word.startswith("--config.file="):
                path = Path(str(root) + word.partition("=")[2])
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                for section in data.values():
                    for key, value in section.items():
                        if isinstance(value, str) and value.startswith("/"):
                            section[key] = reroot(root, value)
                path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return Image(root=root, env=env, entrypoint=meta["entrypoint"], cmd=meta["cmd"],
                 workdir=meta["workdir"], user=meta["user"], volumes=meta["volumes"],
                 exposed=meta["exposed"], healthcheck=meta["hc"][1],
                 healthcheck_options=meta["hc"][0], install_output="".join(outputs))


@pytest.fixture(scope="module")
def image():
    with tempfile.TemporaryDirectory(prefix="pushgw-image-") as tmp:
        yield replay_image(Path(tmp))


def start_image(image: Image, *extra: str) -> ServerProcess:
    """`docker run IMAGE extra...` with a 127.0.0.1 port instead of :9091."""
    last = None
    for _ in range(3):
        port = free_port()
        argv = image.argv(*extra) + [f"--web.listen-address=127.0.0.1:{port}"]
        server = ServerProcess(argv, port, name="pushgw-image", env=image.env,
                               cwd=str(image.root) + image.workdir, ready_timeout=20)
        try:
            return server.start()
        except RuntimeError as e:
            last = e
            if "in use" not in server.output().lower():
                raise
            server.close()
    raise last


def run_healthcheck(image: Image, port: int) -> subprocess.CompletedProcess:
    """The HEALTHCHECK command, with the URL pointing at the test's port."""
    url = urllib.parse.urlsplit(image.env["PUSHGW_HEALTHCHECK_URL"])
    env = dict(image.env, PUSHGW_HEALTHCHECK_URL=url._replace(netloc=f"127.0.0.1:{port}").geturl())
    argv = [image.which(image.healthcheck[0])] + image.healthcheck[1:]
    timeout = float(image.healthcheck_options.get("timeout", "30s").rstrip("s"))
    return run(argv, env=env, timeout=timeout + 5)


def scrape_value(server: ServerProcess, name: str, labels: dict[str, str]) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    status, _, body = http_request("GET", server.url + "/metrics")
    assert status == 200, body[:300]
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


# --- Dockerfile tests ----------------------------------------------------------------

def test_dockerfile_is_multi_stage_slim_python_non_root():
    stages = parse_dockerfile()
    assert len(stages) >= 2, "multi-stage: a build stage and a final stage"
    build, final = stages[0], stages[-1]
    assert build.alias, "the build stage needs a name for COPY --from"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for stage in (build, final):
        assert stage.image == f"python:{version}-slim", \
            f"FROM {stage.image}: the image must use the Python the tests run ({version}), slim"
    runs = build.of("RUN")
    assert len(runs) == 1 and INSTALL_SCRIPT in runs[0].args, \
        f"the build stage runs exactly the install script {INSTALL_SCRIPT}"
    assert any(copy_args(c.args)[0].get("from") == build.alias for c in final.of("COPY")), \
        "the final stage copies the venv from the build stage"
    users = final.of("USER")
    assert users, "the final stage must switch to a non-root user"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1].args} is root"
    assert [i.args for i in final.of("EXPOSE")] == [str(DEFAULT_PORT)]
    assert [i.args for i in final.of("VOLUME")] == ["/data"]
    entrypoint = exec_form(final.of("ENTRYPOINT")[-1].args, "ENTRYPOINT")
    assert entrypoint[0] == "pushgw", "official flags go straight to pushgw"
    options, command = healthcheck_command(final.of("HEALTHCHECK")[-1].args)
    assert command[:2] == ["python", "-c"], "no curl in slim images: python -c with urllib"
    assert "urllib" in command[2]
    env = dict(p for ins in final.of("ENV") for p in env_pairs(ins.args))
    url = urllib.parse.urlsplit(env["PUSHGW_HEALTHCHECK_URL"])
    assert (url.port, url.path) == (DEFAULT_PORT, "/-/healthy"), \
        "the health check probes /-/healthy on the exposed port"
    assert {"interval", "timeout", "retries"} <= set(options)


def test_image_flags_keep_the_data_volume_default(tmp_path):
    """`docker run IMAGE [official flags]`: the persistence default survives
    extra flags, and flags win over the image's config file."""
    stages = parse_dockerfile()
    final = stages[-1]
    entrypoint = exec_form(final.of("ENTRYPOINT")[-1].args, "ENTRYPOINT")
    cmds = final.of("CMD")
    cmd = exec_form(cmds[-1].args, "CMD") if cmds else []
    # Map the image's config file to the repo file it is copied from.
    copies = {copy_args(c.args)[2]: copy_args(c.args)[1][0]
              for c in final.of("COPY") if "from" not in copy_args(c.args)[0]}
    args = []
    for word in entrypoint[1:]:
        if word.startswith("--config.file="):
            image_path = word.partition("=")[2]
            assert image_path in copies, f"{image_path} is not copied into the image"
            word = f"--config.file={REPO_ROOT / copies[image_path]}"
        args.append(word)
    plain = settings_for(args + cmd)
    assert plain.persistence_file == "/data/pushgw.db"
    assert plain.listen_addresses == [f":{DEFAULT_PORT}"]
    admin = settings_for(args + ["--web.enable-admin-api"])
    assert admin.enable_admin_api and admin.persistence_file == "/data/pushgw.db"
    assert settings_for(args + ["--persistence.file="]).persistence_file == ""
    assert settings_for(args + ["--persistence.file=/x/y.db"]).persistence_file == "/x/y.db"


def test_dockerignore_keeps_the_build_context_small():
    context = build_context()
    for needed in ("pyproject.toml", "pushgw/__init__.py", "pushgw/cli.py",
                   INSTALL_SCRIPT, "deploy/docker/config.yaml"):
        assert needed in context, f"{needed} must be in the build context"
    unwanted = [f for f in context
                if f.startswith(("tests/", ".venv/", ".git/", "deploy/kubernetes/"))
                or "__pycache__" in f or ".egg-info" in f or f.endswith((".pyc", ".db"))]
    assert not unwanted, f".dockerignore lets these in: {unwanted[:10]}"


def test_image_install_serves_push_scrape_and_healthcheck(image):
    """The image's install steps, run outside Docker, give a working gateway."""
    assert "pushgw, version" in image.install_output
    binary = image.which(image.entrypoint[0])
    assert binary.startswith(str(image.root)), f"{binary} is not the freshly installed pushgw"
    server = start_image(image)
    try:
        assert server.argv[0] == binary
        body = b'deploy_test_metric{kind="smoke"} 42\n'
        status, _, answer = http_request("PUT", server.url + "/metrics/job/deploy_test/instance/docker",
                                         body=body, headers={"Content-Type": "text/plain"})
        assert status == 200, answer
        value = scrape_value(server, "deploy_test_metric",
                             {"job": "deploy_test", "instance": "docker", "kind": "smoke"})
        assert value == 42, server.output()
        check = run_healthcheck(image, server.port)
        assert check.returncode == 0, f"HEALTHCHECK failed on a healthy gateway:\n{check.stderr}"
    finally:
        rc = server.stop()
        server.close()
    assert rc == 0, f"pushgw exited with {rc} on SIGTERM:\n{server.output()}"
    down = run_healthcheck(image, server.port)
    assert down.returncode != 0, "HEALTHCHECK must fail when the gateway is down"


def test_image_has_the_postgresql_driver(image):
    """--persistence.url needs asyncpg in the image (a pyproject dependency)."""
    proc = run([image.which("python"), "-c", "import asyncpg, sys; sys.stdout.write(asyncpg.__file__)"],
               env=image.env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(image.root)), f"asyncpg not from the image: {proc.stdout}"


def image_files(image: Image, data_dir: Path) -> set[str]:
    """Every file in the image's file system outside the data volume."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(image.root):
        if Path(dirpath) == data_dir:
            dirnames[:] = []
            continue
        out.update(os.path.join(dirpath, f) for f in filenames)
    return out


def test_image_persists_to_the_data_volume_only(image):
    """Pushed metrics survive a restart through /data/pushgw.db, and nothing
    is written outside /data (the Kubernetes manifest sets
    readOnlyRootFilesystem)."""
    data_dir = Path(str(image.root) + image.volumes[0])
    before = image_files(image, data_dir)
    server = start_image(image, "--web.enable-admin-api")
    try:
        status, _, answer = http_request("PUT", server.url + "/metrics/job/persisted",
                                         body=b"deploy_persisted_metric 7\n")
        assert status == 200, answer
    finally:
        server.stop()
        output = server.output()
        server.close()
    assert (data_dir / "pushgw.db").is_file(), \
        f"no pushgw.db in the data volume; it holds {os.listdir(data_dir)}\n{output}"
    again = start_image(image)
    try:
        assert scrape_value(again, "deploy_persisted_metric", {"job": "persisted"}) == 7, \
            "a metric pushed before a restart must be restored from /data"
    finally:
        again.stop()
        again.close()
    written = image_files(image, data_dir) - before
    assert not written, f"pushgw wrote outside the data volume: {sorted(written)[:10]}"


# --- Prometheus ------------------------------------------------------------------------

def load_yaml(path: Path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_promtool_check_config():
    proc = run([promtool(), "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_scrape_config_honors_pushed_labels():
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = jobs["pushgateway"]  # the alerts and the dashboard use job="pushgateway"
    assert gateway.get("honor_labels") is True
    targets = [t for sc in gateway["static_configs"] for t in sc["targets"]]
    assert targets == [f"pushgw:{DEFAULT_PORT}"], "the compose service name and port"
    assert gateway.get("metrics_path", "/metrics") == load_settings([]).telemetry_path
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file()


def test_promtool_check_rules():
    proc = run([promtool(), "check", "rules", "alerts.yml"], cwd=PROMETHEUS_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = {r["alert"]: r for g in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
             for r in g["rules"]}
    exprs = " ".join(r["expr"] for r in rules.values())
    assert 'up{job="pushgateway"} == 0' in exprs
    assert "push_failure_time_seconds > push_time_seconds" in exprs
    assert re.search(r"time\(\) - push_time_seconds > \d+", exprs)
    assert "pushgateway_metric_groups" in exprs and "pushgateway_stored_series" in exprs
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_promtool_unit_tests_fire_the_alerts():
    tests = load_yaml(PROMETHEUS_DIR / "alerts.test.yml")
    fired = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]
             if t.get("exp_alerts")}
    assert {"PushgatewayPushFailing", "PushgatewayStalePusher", "PushgatewayDown",
            "PushgatewayTooManyGroups", "BatchJobFailed", "BatchJobNoRecentSuccess"} <= fired
    proc = run([promtool(), "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("broken, replacement", [
    ("push_failure_time_seconds > push_time_seconds", "push_failure_time_seconds < push_time_seconds"),
    ("time() - push_time_seconds > 3600", "time() - push_time_seconds > 86400"),
    ("job_last_success_timestamp_seconds > 1.5 * 86400", "job_last_success_timestamp_seconds > 2 * 86400"),
    ("job_exit_code != 0", "job_exit_code > 3"),
])
def test_promtool_unit_tests_catch_broken_rules(tmp_path, broken, replacement):
    """The unit tests are not vacuous: a wrong rule makes them fail."""
    tool = promtool()
    for name in ("alerts.yml", "alerts.test.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    rules = (tmp_path / "alerts.yml").read_text()
    assert broken in rules
    (tmp_path / "alerts.yml").write_text(rules.replace(broken, replacement))
    proc = run([tool, "test", "rules", "alerts.test.yml"], cwd=tmp_path)
    assert proc.returncode != 0, f"the unit tests still pass with {replacement!r}"


# --- Grafana ----------------------------------------------------------------------------

GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s",
                    "__all", "__dashboard"}


def dashboard() -> dict:
    with open(GRAFANA_DIR / "dashboards" / "pushgw.json", encoding="utf-8") as f:
        return json.load(f)


def test_grafana_provisioning_is_well_formed():
    sources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["uid"]
    url = urllib.parse.urlsplit(source["url"])
    assert url.hostname == "prometheus", "the compose service name"
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "pushgw.yml")
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_grafana_dashboard_panels():
    board = dashboard()
    source_uid = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"][0]["uid"]
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in board["templating"]["list"]}
    exprs = []
    for panel in panels:
        assert panel["title"] and set(panel["gridPos"]) == {"x", "y", "w", "h"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == source_uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source_uid, panel["title"]
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= variables | GRAFANA_BUILTINS, f"{panel['title']}: unknown {used}"
            exprs.append(target["expr"])
    text = "\n".join(exprs)
    for needed in ("pushgateway_metric_groups", "pushgateway_stored_series",
                   'pushgateway_http_requests_total{job=~"$gateway_job", handler="push"}',
                   "sum by (code)", "pushgateway_http_push_duration_seconds",
                   "time() - max by (job) (push_time_seconds"):
        assert needed in text, f"the dashboard lacks {needed}"
    assert re.search(r"push_failure_time_seconds(\{[^}]*\})? > push_time_seconds", text), \
        "the dashboard lacks the failing groups"
    titles = " ".join(p["title"].lower() for p in panels)
    for needed in ("groups", "series", "push rate", "duration", "last push age", "failing"):
        assert needed in titles


def test_grafana_dashboard_queries_are_valid_promql(tmp_path):
    """Every panel query, with its variables filled in, must parse: promtool
    checks them as recording rules."""
    tool = promtool()
    board = dashboard()
    values = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
    for var in board["templating"]["list"]:
        values[var["name"]] = ".*" if var.get("includeAll") else var["current"]["value"]
    rules = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], target["expr"])
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["definition"]).group(1)
            rules.append({"record": f"dashboard:variable_{var['name']}", "expr": inner})
    (tmp_path / "dashboard.rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = run([tool, "check", "rules", "dashboard.rules.yml"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- docker-compose ----------------------------------------------------------------------

def test_docker_compose_config_validates():
    tool = docker_compose()
    proc = run([tool, "-f", str(COMPOSE_FILE), "config"], cwd=REPO_ROOT,
               env=dict(os.environ, COMPOSE_PROJECT_NAME="pushgw-test"))
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    services = config["services"]
    assert {"pushgw", "prometheus", "grafana"} <= set(services)

    def mounts(service):
        out = {}
        for volume in services[service].get("volumes", []):
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) \
                else volume.split(":")[:2]
            out[target] = source
        return out

    gw = services["pushgw"]
    assert gw["build"]["context"] == str(REPO_ROOT)
    assert "/data" in mounts("pushgw"), "the image's VOLUME must be a named volume"
    assert any(str(p["target"]) == str(DEFAULT_PORT) for p in gw["ports"])
    settings_for(gw.get("command", []))  # official flags only
    # Prometheus reads deploy/prometheus (config + rules).
    prom = services["prometheus"]
    config_flag = next(a for a in prom["command"] if a.startswith("--config.file="))
    config_dir = os.path.dirname(config_flag.partition("=")[2])
    assert mounts("prometheus")[config_dir] == str(PROMETHEUS_DIR)
    # Grafana: provisioning + the dashboards where the provider looks.
    graf = mounts("grafana")
    assert graf["/etc/grafana/provisioning"] == str(GRAFANA_DIR / "provisioning")
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "pushgw.yml")["providers"][0]
    assert graf[provider["options"]["path"]] == str(GRAFANA_DIR / "dashboards")
    for service in services:
        for target, source in mounts(service).items():
            if source.startswith("/"):
                assert Path(source).exists(), f"{service}: bind mount {source} does not exist"


# --- the cluster: compose + HAProxy --------------------------------------------------------

def cluster_flags(flags: list[str]):
    """pushgw's settings for a replica's flags and its database URL.

    Until pushgw knows --persistence.url (the PostgreSQL engine), the URL is
    taken out before the other flags are checked; from then on it is checked
    with them."""
    urls = [f.partition("=")[2] for f in flags if f.startswith("--persistence.url=")]
    assert len(urls) == 1, f"one --persistence.url in {flags!r}"
    if not hasattr(load_settings([]), "persistence_url"):
        flags = [f for f in flags if not f.startswith("--persistence.url=")]
    settings = settings_for(flags)
    assert not settings.persistence_file, "a replica keeps its state in PostgreSQL only"
    url = urllib.parse.urlsplit(urls[0])
    assert url.scheme in ("postgresql", "postgres") and url.password is None, \
        f"{urls[0]}: no password on a command line (PGPASSWORD / PGPASSFILE)"
    return settings, url


def haproxy_servers(cfg: Path, backend: str) -> dict[str, str]:
    """The ``server NAME ADDRESS`` lines of one backend section."""
    servers, section = {}, None
    for line in cfg.read_text(encoding="utf-8").splitlines():
        words = line.split("#")[0].split()
        if not words:
            continue
        if not line[0].isspace():
            section = words[:2]
        elif section == ["backend", backend] and words[0] == "server":
            servers[words[1]] = words[2]
    return servers


def test_cluster_haproxy_config_is_valid_and_checks_readiness():
    cfg = CLUSTER_DIR / "haproxy.cfg"
    proc = run([haproxy(), "-c", "-f", str(cfg)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = cfg.read_text(encoding="utf-8")
    for needed in ("mode http", "option httpchk GET /-/ready", "http-check expect status 200",
                   "option redispatch", "balance roundrobin"):
        assert needed in text, f"haproxy.cfg lacks {needed!r}"
    assert re.search(r"^\s*retries [1-9]", text, re.M)
    assert re.search(rf"^\s*bind :{DEFAULT_PORT}$", text, re.M)


def loopback_haproxy_config(replicas: dict[str, int]):
    """deploy/cluster/haproxy.cfg made to run here: the frontend on
    127.0.0.1:PORT, the stats page on a unix socket, each replica-N at
    127.0.0.1:replicas[N], plus an admin socket for the test."""
    text = (CLUSTER_DIR / "haproxy.cfg").read_text(encoding="utf-8")

    def make_config(port: int, admin_socket: Path) -> str:
        out = text.replace("\nglobal\n", f"\nglobal\n    stats socket {admin_socket} mode 600 level admin\n", 1)
        out = re.sub(rf"^(\s*bind) :{DEFAULT_PORT}$", rf"\1 127.0.0.1:{port}", out, flags=re.M)
        out = re.sub(r"^(\s*bind) :8404$", rf"\1 unix@{admin_socket}.stats", out, flags=re.M)
        for name, replica_port in replicas.items():
            out, count = re.subn(rf"^(\s*server {name}) \S+", rf"\1 127.0.0.1:{replica_port}", out, flags=re.M)
            assert count == 1, f"no server {name} in haproxy.cfg"
        assert not re.search(r"^\s*bind :", out, re.M), "a bind left on every address"
        return out

    return make_config


def test_cluster_haproxy_config_routes_around_a_killed_replica():
    """The deploy haproxy.cfg itself, on loopback in front of three real pushgw:
    every request is answered 200 while one replica is killed (redispatch),
    and the killed one is marked DOWN by the /-/ready check."""
    replicas = {name: start_pushgw() for name in haproxy_servers(CLUSTER_DIR / "haproxy.cfg", "replicas")}
    lb = None
    try:
        lb = start_haproxy([(gw.host, gw.port) for gw in replicas.values()], backend="replicas",
                           make_config=loopback_haproxy_config({n: gw.port for n, gw in replicas.items()}))
        lb.wait_states({name: "UP" for name in replicas})
        for _ in range(3 * len(replicas)):
            status, _, body = http_request("GET", lb.url + "/-/ready")
            assert status == 200, body
        sessions = {row["svname"]: int(row["stot"]) for row in csv.DictReader(
            io.StringIO(lb.admin("show stat").lstrip("# "))) if row["svname"] in replicas}
        assert sessions == {name: 3 for name in replicas}, "round robin over every replica"
        victim = sorted(replicas)[1]
        replicas[victim].proc.kill()  # kill -9, by its own pid
        replicas[victim].wait(timeout=5)
        for _ in range(2 * len(replicas)):
            status, _, body = http_request("GET", lb.url + "/-/ready", timeout=15)
            assert status == 200, f"a request was lost with {victim} killed: {status} {body!r}"
        lb.wait_states({victim: "DOWN"}, timeout=10)
    finally:
        if lb is not None:
            lb.close()
        for gw in replicas.values():
            gw.close()


def test_cluster_compose_config_validates():
    compose_file = CLUSTER_DIR / "docker-compose.yml"
    proc = run([docker_compose(), "-f", str(compose_file), "config"], cwd=REPO_ROOT,
               env=dict(os.environ, COMPOSE_PROJECT_NAME="pushgw-cluster-test"))
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    replicas = {name: svc for name, svc in services.items() if name.startswith("replica-")}
    assert len(replicas) == 3
    database = services["postgres"]
    assert database["image"].startswith("postgres:")
    db_password = database["environment"]["POSTGRES_PASSWORD"]
    for name, svc in replicas.items():
        assert svc["build"]["context"] == str(REPO_ROOT), name
        assert svc["entrypoint"] == ["pushgw"], f"{name}: not the image's SQLite config file"
        assert "ports" not in svc, f"{name}: reached through the load balancer only"
        _, url = cluster_flags(svc["command"])
        assert (url.hostname, url.port) == ("postgres", 5432), name
        assert url.username == database["environment"]["POSTGRES_USER"], name
        assert url.path == "/" + database["environment"]["POSTGRES_DB"], name
        assert svc["environment"]["PGPASSWORD"] == db_password, name
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
    # The load balancer is "pushgw", the name deploy/prometheus scrapes.
    balancer = services["pushgw"]
    assert balancer["image"].startswith("haproxy:")
    assert any(str(p["target"]) == str(DEFAULT_PORT) for p in balancer["ports"])
    mounts = {v.split(":")[1]: v.split(":")[0] for v in balancer["volumes"]}
    cfg = Path(mounts["/usr/local/etc/haproxy/haproxy.cfg"])
    assert cfg == CLUSTER_DIR / "haproxy.cfg"
    assert haproxy_servers(cfg, "replicas") == {name: f"{name}:{DEFAULT_PORT}" for name in replicas}
    prometheus_config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    gateway = next(j for j in prometheus_config["scrape_configs"] if j["job_name"] == "pushgateway")
    assert gateway["honor_labels"] is True
    assert [t for sc in gateway["static_configs"] for t in sc["targets"]] == [f"pushgw:{DEFAULT_PORT}"]
    prom_mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert prom_mounts["/etc/prometheus"] == str(PROMETHEUS_DIR)


# --- Kubernetes ------------------------------------------------------------------------------

def k8s_documents() -> list[dict]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        with open(path, encoding="utf-8") as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def test_kubernetes_manifests():
    docs = k8s_documents()
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S_DIR / resource).is_file()
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert sts["spec"]["serviceName"] in services
    assert services[sts["spec"]["serviceName"]]["spec"].get("clusterIP") == "None"
    pod = sts["spec"]["template"]
    assert pod["metadata"]["labels"].items() >= sts["spec"]["selector"]["matchLabels"].items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [DEFAULT_PORT]

    def port_of(ref):
        return ports[ref] if isinstance(ref, str) else ref

    probes = {"livenessProbe": "/-/healthy", "readinessProbe": "/-/ready"}
    for probe, path in probes.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and port_of(get["port"]) == DEFAULT_PORT, probe
    for service in services.values():
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        for port in service["spec"]["ports"]:
            assert port_of(port["targetPort"]) == DEFAULT_PORT
    # The database volume: a claim template mounted at the image's VOLUME.
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = parse_dockerfile()[-1].of("VOLUME")[-1].args
    assert mounts[claim["metadata"]["name"]] == volume
    assert claim["spec"]["resources"]["requests"]["storage"]
    # Flags appended to the image's entrypoint must be official ones.
    settings = settings_for(container.get("args", []))
    assert not settings.persistence_file, "the image's config file sets the database path"
    # Security and resources.
    pod_security = pod["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    user = parse_dockerfile()[-1].of("USER")[-1].args.split(":")[0]
    assert str(pod_security["runAsUser"]) == user and pod_security.get("fsGroup")
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


def test_kubernetes_cluster_manifests():
    kustomization = load_yaml(K8S_CLUSTER_DIR / "kustomization.yaml")
    docs = []
    for resource in kustomization["resources"]:
        with open(K8S_CLUSTER_DIR / resource, encoding="utf-8") as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service", "PodDisruptionBudget"}
    deployment, service, budget = kinds["Deployment"], kinds["Service"], kinds["PodDisruptionBudget"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
                     budget["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert budget["spec"].get("maxUnavailable") == 1 or budget["spec"].get("minAvailable") == 2
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [DEFAULT_PORT]
    for port in service["spec"]["ports"]:
        assert ports.get(port["targetPort"], port["targetPort"]) == DEFAULT_PORT
    get = container["readinessProbe"]["httpGet"]
    assert get["path"] == "/-/ready" and ports.get(get["port"], get["port"]) == DEFAULT_PORT
    # Liveness must not fail while PostgreSQL is away (/-/healthy does): the port answers.
    socket_probe = container["livenessProbe"]["tcpSocket"]
    assert ports.get(socket_probe["port"], socket_probe["port"]) == DEFAULT_PORT
    # The database URL and password come from a Secret; $(VAR) in args is
    # expanded by Kubernetes from the container's env.
    assert container["command"] == ["pushgw"], "not the image's SQLite config file"
    env = {e["name"]: e for e in container["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
    args = []
    for arg in container["args"]:
        for name in re.findall(r"\$\((\w+)\)", arg):
            assert env[name]["valueFrom"]["secretKeyRef"], f"$({name}) must come from a Secret"
            arg = arg.replace(f"$({name})", "postgresql://pushgw@db.example:5432/pushgw?sslmode=require")
        args.append(arg)
    cluster_flags(args)
    assert "volumeClaimTemplates" not in deployment["spec"], "the state lives in PostgreSQL"
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == parse_dockerfile()[-1].of("USER")[-1].args.split(":")[0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


# --- systemd ----------------------------------------------------------------------------------

def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{line!r} before any section"
        key, eq, value = line.partition("=")
        assert eq, f"not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_is_hardened():
    unit = parse_unit(SYSTEMD_UNIT)
    service = unit["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert one.get("DynamicUser") == "yes" or one.get("User") not in (None, "root")
    assert one["StateDirectory"] == "pushgw"
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes"}.items():
        assert one.get(key) == value, f"{key}={value}"
    assert one.get("CapabilityBoundingSet", "x") == ""
    words = shlex.split(one["ExecStart"])
    assert words[0] == "/opt/pushgw/bin/pushgw", "the venv install.sh creates"
    flags = [w for w in words[1:] if not w.startswith("$")]
    settings = settings_for(flags)
    assert settings.persistence_file == "/var/lib/pushgw/pushgw.db"
    assert os.path.dirname(settings.persistence_file) == "/var/lib/" + one["StateDirectory"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verify(image, tmp_path):
    """systemd-analyze verify (needs the ExecStart binary: the replayed
    install's /opt/pushgw stands in for the real one)."""
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze not installed; the unit is still parsed by "
                    "test_systemd_unit_is_hardened")
    text = SYSTEMD_UNIT.read_text(encoding="utf-8")
    unit = tmp_path / "pushgw.service"
    unit.write_text(text.replace("/opt/pushgw/", f"{image.root}/opt/pushgw/"))
    proc = run([tool, "verify", str(unit)])
    problems = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not problems, problems
    proc = run([tool, "security", "--offline=yes", str(unit)])
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout + proc.stderr)
    if match:  # --offline exists since systemd 250
        assert float(match.group(1)) <= 2.0, proc.stdout
