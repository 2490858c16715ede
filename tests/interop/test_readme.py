"""The README, run as a test: every shell, CQL and Python block, in order,
against the binary the suite built, as a reader following it would run them.

A block runs as written, with `keel` on PATH and `target/release/keel` in the
working directory both being the built binary. Shell blocks share their
variables (as one terminal would). A line whose comment says `# → TEXT`
must print TEXT; one whose comment says `# Error: TEXT` must fail saying
TEXT (a parenthesis after TEXT explains it and is not expected); every
other line must succeed. A block may carry a directive in an
HTML comment just before it (invisible on GitHub):

    <!-- readme-test: {"skip": "why"} -->            not run; the reason is required
    <!-- readme-test: {"background": "REGEX", "times": N} -->
          a server: started in the background once the one before it is
          stopped (Ctrl-C), ready when its output has matched REGEX N times
    <!-- readme-test: {"sub": [["FROM", "TO"]]} -->  run with FROM replaced by TO
          (a benchmark's size, made small)
    <!-- readme-test: {"cqlsh": "HOST PORT"} -->     a cqlsh transcript block:
          each `cqlsh>` line run there, its output lines (the text between
          `...` gaps) expected, retried until they match or 20 s pass

Fenced blocks in other languages (text, toml) are prose and are not run.
The servers use the README's own ports (9092, 2379, 9042, 9644 and the
three-node cluster's), which no other test uses.
"""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import KEEL, ROOT

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(\{.*?\})\s*-->", re.S)
RUN_LANGS = {"sh", "sql", "python"}
EXPECT_OUT = re.compile(r"^(?P<cmd>.*?\S)\s+#\s*→\s*(?P<want>.+?)\s*$")
EXPECT_ERR = re.compile(r"^(?P<cmd>.*?\S)\s+#\s*Error:\s*(?P<want>.+?)\s*$")


def blocks(text):
    """(line number, language, body, directive) of every fenced block."""
    out, last_end = [], 0
    for m in FENCE.finditer(text):
        between = text[last_end:m.start()]
        ds = DIRECTIVE.findall(between)
        directive = json.loads(ds[-1]) if ds else {}
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2), directive))
        last_end = m.end()
    return out


def shell_script(body):
    """The block with its `# →` and `# Error:` lines made into checks."""
    lines, out, continued = body.splitlines(), [], False
    for line in lines:
        m_out, m_err = EXPECT_OUT.match(line), EXPECT_ERR.match(line)
        whole = not continued and not line.rstrip().endswith(("\\", "|", "&&"))
        if whole and m_err:
            cmd, want = m_err["cmd"], m_err["want"]
            out.append(
                f"if __out=$( {cmd} 2>&1 ); then printf '%s\\n' \"$__out\"; "
                f"echo 'README: expected this to fail: {q(cmd)}' >&2; exit 1; fi; "
                f"printf '%s\\n' \"$__out\"; "
                f"grep -qF -- {sh(want)} <<<\"$__out\" || "
                f"{{ echo 'README: expected the error {q(want)}' >&2; exit 1; }}")
        elif whole and m_out:
            # A parenthesis at the end explains; it is not printed.
            cmd, want = m_out["cmd"], re.sub(r"\s+\(.*\)$", "", m_out["want"])
            out.append(
                f"__out=$( {cmd} ); printf '%s\\n' \"$__out\"; "
                f"grep -qF -- {sh(want)} <<<\"$__out\" || "
                f"{{ echo 'README: expected output {q(want)}' >&2; exit 1; }}")
        else:
            out.append(line)
        continued = line.rstrip().endswith(("\\", "|", "&&"))
    return "\n".join(out) + "\n"


def sh(s):
    return "'" + s.replace("'", "'\\''") + "'"


def q(s):
    return s.replace("'", "'\\''")


class Reader:
    """One reader's terminal: a working directory, shared shell variables,
    a server in the background, and whatever the blocks left running."""

    def __init__(self, tmp):
        self.dir = tmp / "work"
        (self.dir / "target" / "release").mkdir(parents=True)
        os.symlink(KEEL, self.dir / "target" / "release" / "keel")
        # keel-sim is built beside keel by the same `cargo test --release`.
        sim = Path(KEEL).parent / "keel-sim"
        if sim.exists():
            os.symlink(sim, self.dir / "target" / "release" / "keel-sim")
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        os.symlink(KEEL, bin_dir / "keel")
        self.env = dict(os.environ)
        self.env["PATH"] = f"{bin_dir}:{self.env['PATH']}"
        self.env.pop("KEEL_BIN", None)
        self.state = tmp / "state.env"
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.server = None
        self.groups = []   # process groups of blocks, killed at the end
        self.n = 0

    def log_path(self, line):
        self.n += 1
        return self.logs / f"{self.n:03d}-line{line}.log"

    def run_shell(self, line, body, timeout=300):
        script = self.logs / f"block-line{line}.sh"
        script.write_text(
            "set -eo pipefail\nset -a\n"
            f"[ -f {self.state} ] && source {self.state}\n"
            + shell_script(body)
            + f"export -p > {self.state}\n")
        log = self.log_path(line)
        with open(log, "wb") as f:
            # Its own process group: what the block leaves in the background
            # (a watch, a restarted node) lives on until the end; the output
            # goes to a file so such children never hold a pipe open.
            p = subprocess.Popen(["bash", str(script)], cwd=self.dir, env=self.env,
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            self.groups.append(p.pid)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = "timeout"
        out = log.read_text(errors="replace")
        assert rc == 0, f"README line {line}: the block failed ({rc}):\n{body}\n--- output ---\n{out[-4000:]}"
        return out

    def run_file(self, line, argv, body, suffix):
        path = self.logs / f"block-line{line}{suffix}"
        path.write_text(body)
        r = subprocess.run(argv + [str(path)], cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        out = r.stdout + r.stderr
        self.log_path(line).write_text(out)
        return r.returncode, out

    def start_server(self, line, body, directive):
        self.stop_server()
        log = self.log_path(line)
        script = self.logs / f"server-line{line}.sh"
        script.write_text(f"set -a\n[ -f {self.state} ] && source {self.state}\n{body}")
        f = open(log, "wb")
        p = subprocess.Popen(["bash", str(script)], cwd=self.dir, env=self.env,
                             stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.server = (p, f, log)
        pattern, times = re.compile(directive["background"]), directive.get("times", 1)
        deadline = time.monotonic() + 120
        while len(pattern.findall(log.read_text(errors="replace"))) < times:
            assert p.poll() is None, f"README line {line}: the server exited:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, \
                f"README line {line}: no {pattern.pattern!r} x{times} in 120 s:\n{log.read_text()[-4000:]}"
            time.sleep(0.05)

    def stop_server(self):
        if not self.server:
            return
        p, f, log = self.server
        self.server = None
        # Ctrl-C, as the README says; the whole group, as a terminal sends it.
        try:
            os.killpg(p.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise AssertionError(f"the server did not stop within 60 s of Ctrl-C:\n{log.read_text()[-3000:]}")
        finally:
            f.close()
        # What the blocks left running against it (a watch, a restarted node).
        self.kill_groups()

    def kill_groups(self):
        for g in self.groups:
            try:
                os.killpg(g, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.groups = []

    def transcript(self, line, body, where):
        host, port = where.split()
        steps, cur = [], None
        for l in body.splitlines():
            if l.startswith("cqlsh> "):
                cur = (l[len("cqlsh> "):], [])
                steps.append(cur)
            elif cur and l.strip():
                cur[1].append(l)
        for cql, expected in steps:
            frags = [" ".join(f.split()) for e in expected for f in e.split("...") if f.strip()]
            deadline = time.monotonic() + 20
            while True:
                r = subprocess.run(["cqlsh", host, port, "-e", cql], cwd=self.dir, env=self.env,
                                   capture_output=True, text=True, timeout=60)
                out = " ".join((r.stdout + r.stderr).split())
                missing = [f for f in frags if f not in out]
                if not missing:
                    break
                assert time.monotonic() < deadline, \
                    f"README line {line}: `{cql}` printed\n{r.stdout}{r.stderr}\nwithout {missing}"
                time.sleep(0.5)


def test_every_block_of_the_readme_runs_in_order(tmp_path):
    text = README.read_text()
    reader = Reader(tmp_path)
    ran = 0
    try:
        for line, lang, body, d in blocks(text):
            for frm, to in d.get("sub", []):
                assert frm in body, f"README line {line}: sub {frm!r} matches nothing"
                body = body.replace(frm, to)
            if "skip" in d:
                assert d["skip"].strip(), f"README line {line}: a skip needs its reason"
                continue
            if "cqlsh" in d:
                reader.transcript(line, body, d["cqlsh"])
                ran += 1
                continue
            if lang not in RUN_LANGS:
                continue
            ran += 1
            if "background" in d:
                reader.start_server(line, body.replace("cargo run --release --", "keel"), d)
            elif lang == "sh":
                reader.run_shell(line, body)
            elif lang == "sql":
                rc, out = reader.run_file(line, ["cqlsh", "127.0.0.1", "9042", "-f"], body, ".cql")
                assert rc == 0 and "Error" not in out, f"README line {line}: cqlsh failed:\n{out}"
            elif lang == "python":
                rc, out = reader.run_file(line, ["python3"], body, ".py")
                assert rc == 0, f"README line {line}: python failed:\n{out}"
    finally:
        reader.stop_server()
        reader.kill_groups()
    assert ran >= 20, f"only {ran} README blocks ran: is the harness still finding them?"


def test_a_stale_line_fails_the_harness(tmp_path):
    """The harness itself: a command that fails, prints other than its
    `# →` says, or succeeds where its `# Error:` says it fails, fails the
    block, so a stale README line breaks the build."""
    reader = Reader(tmp_path)
    reader.run_shell(1, "X=hello\necho $X   # → hello\n")
    # Variables carry from block to block, as in one terminal.
    reader.run_shell(2, "echo $X-again   # → hello-again\nls /nonexistent   # Error: No such file\n")
    for stale in ["echo hi   # → bye\n", "keel topic nosuchverb\n", "true   # Error: permission denied\n",
                  "ls /nonexistent   # Error: permission denied\n"]:
        try:
            reader.run_shell(3, stale, timeout=30)
        except AssertionError:
            continue
        raise AssertionError(f"the harness passed a stale block: {stale!r}")


def test_keel_dev_labels_each_nodes_lines_and_reports_one_that_dies(tmp_path):
    """`keel dev --nodes 3` (on the README's ports, so in this file): every
    node's line carries its id, the settings given to `keel dev` reach every
    node, one cluster id everywhere, a killed node is reported with how it
    died and how to start it again (and is reaped), and Ctrl-C ends it all
    quickly."""
    import urllib.request
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    log = tmp_path / "dev.log"
    f = open(log, "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_NUM_PARTITIONS"] = "3"   # a variable given to keel dev reaches each node
    # Each node its own datacenter and rack, from one list each.
    p = subprocess.Popen([str(KEEL), "dev", "--nodes", "3", "--data-dir", str(tmp_path / "data"),
                          "--cql-addr", "none", "--datacenter", "dc1,dc1,dc2", "--rack", "a,b,a"],
                         env=env, stdout=f, stderr=subprocess.STDOUT,
                         start_new_session=True)
    text = lambda: log.read_text(errors="replace")
    try:
        deadline = time.monotonic() + 60
        while text().count("is up (node") < 3:
            assert p.poll() is None and time.monotonic() < deadline, text()[-3000:]
            time.sleep(0.05)
        for i in (1, 2, 3):
            assert re.search(rf"^n{i}\| Keel .* is up \(node {i}, cluster ", text(), re.M), text()
            assert re.search(rf"^n{i}\| .*INFO", text(), re.M), f"no INFO line labelled n{i}"
        # Every line after the parent's own banner belongs to a node.
        child_lines = [l for l in text().splitlines() if l and not l.startswith(("Keel: a local", "  "))]
        assert all(re.match(r"^n[123]\| ", l) for l in child_lines), [l for l in child_lines if not re.match(r"^n[123]\| ", l)]
        ids = set()
        for port in (9644, 9645, 9646):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                ids.add(json.loads(r.read())["cluster_id"])
        assert len(ids) == 1, ids
        def places():
            with urllib.request.urlopen("http://127.0.0.1:9645/cluster", timeout=5) as r:
                return {n["id"]: (n["datacenter"], n["rack"]) for n in json.loads(r.read())["nodes"]}
        deadline = time.monotonic() + 20
        while len(places()) < 3:
            assert time.monotonic() < deadline, places()
            time.sleep(0.05)
        assert places() == {1: ("dc1", "a"), 2: ("dc1", "b"), 3: ("dc2", "a")}, places()
        prod = Producer({"bootstrap.servers": "127.0.0.1:9092"})
        prod.produce("auto-from-dev", b"x")
        assert prod.flush(30) == 0
        md = AdminClient({"bootstrap.servers": "127.0.0.1:9092"}).list_topics("auto-from-dev", timeout=10)
        assert len(md.topics["auto-from-dev"].partitions) == 3

        # This cluster's node 2 alone: other test files run clusters too.
        pattern = f"--node-id 2 --data-dir {tmp_path / 'data' / 'node2'} "
        found = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout.split()
        assert len(found) == 1, found
        node2 = int(found[0])
        os.kill(node2, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while "Restart it with:" not in text():
            assert time.monotonic() < deadline, text()[-3000:]
            time.sleep(0.05)
        assert "node 2 exited (killed by signal 9 (SIGKILL))" in text()
        restart = text().split("Restart it with:\n", 1)[1].splitlines()[0].strip()
        assert "--node-id 2 " in restart and restart.split()[1] == "start"
        assert "--datacenter dc1 --rack b" in restart, restart
        # Reaped: no <defunct> left behind.
        assert not Path(f"/proc/{node2}").exists()
        assert p.poll() is None, "the others go on"
    finally:
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGINT)
        p.wait(timeout=60)
        stopped = time.monotonic() - t0
        f.close()
    assert p.returncode == 0, text()[-3000:]
    assert text().count("stopped cleanly") == 2, text()[-3000:]
    # Two nodes, each stopping cleanly: a few seconds, not a few more after
    # each "stopped cleanly".
    assert stopped < 15, f"Ctrl-C took {stopped:.1f} s"
