"""`run_all.sh --slurm` for real: a single-node SLURM on localhost runs a slice of the --quick matrix.

Where `sbatch`/`slurmctld`/`slurmd` are absent the test installs Debian's packages with apt-get (root and
the package mirrors needed, bounded in time) and skips with the reason where that is impossible. It writes
a private slurm.conf under tmp_path (this host as the only node, free ports, no cgroups, no systemd,
auth/none where this SLURM still ships it, else munge on a private socket), starts the daemons in the
foreground as children of the test, submits the 2-job slice `--only 'sa-darts|sp-darts' --spaces nb201
--datasets cifar10 --seeds '0 1'` through `run_all.sh --slurm --quick` (each cell's two seeds one
replica-batched task), waits for the job array and checks that both tasks completed and wrote, per seed,
a result.json with a genotype and its NAS-Bench-201 numbers. The daemons are
always stopped, leaving no processes behind.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK_DATA = ROOT.parent / "shared" / "data"  # what `run_all.sh --quick` reads (../shared/data)
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "slurmctld", "slurmd")
INSTALL_TIMEOUT_S = 240
NODE_UP_TIMEOUT_S = 60
JOBS_TIMEOUT_S = 360
LABELS = ("sa-darts", "sp-darts")
NB201_ARCH = re.compile(r"^\|[a-z0-9_]+~0\|\+\|[a-z0-9_]+~0\|[a-z0-9_]+~1\|\+\|[a-z0-9_]+~0\|[a-z0-9_]+~1\|[a-z0-9_]+~2\|$")

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True, check=False)


def _tail(text: str, n: int = 1500) -> str:
    return text.strip()[-n:]


def _install_slurm() -> str | None:
    """None when the SLURM binaries are (now) on PATH, else why they cannot be installed here."""
    if all(shutil.which(b) for b in BINARIES):
        return None
    if not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install it"
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        try:
            r = _run(cmd, env, timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` did not finish within {INSTALL_TIMEOUT_S} s"
        if r.returncode != 0:
            return f"`{' '.join(cmd)}` failed (exit {r.returncode}): {_tail(r.stdout + r.stderr, 400)}"
    missing = [b for b in BINARIES if not shutil.which(b)]
    return f"apt-get installed {' '.join(PACKAGES)} but {missing} are still not on PATH" if missing else None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _has_auth_none() -> bool:
    """Debian's SLURM 22.05 still ships the auth/none plugin (no munged needed); newer SLURMs may not."""
    patterns = ("/usr/lib/*/slurm-wlm/auth_none.so", "/usr/lib*/slurm*/auth_none.so", "/usr/local/lib*/slurm*/auth_none.so")
    return any(glob.glob(p) for p in patterns)


def _slurm_conf(d: Path, node_line: str, auth: list[str]) -> str:
    """A single-node cluster on this host: root daemons, state and logs under d, no cgroups/accounting."""
    host = node_line.split()[0].split("=", 1)[1]
    ctld_port, d_port = _free_ports(2)
    return "\n".join([
        "ClusterName=dartstest",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={d_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        *auth,
        f"StateSaveLocation={d / 'state'}",
        f"SlurmdSpoolDir={d / 'spool'}",
        f"SlurmctldPidFile={d / 'slurmctld.pid'}",
        f"SlurmdPidFile={d / 'slurmd.pid'}",
        f"SlurmctldLogFile={d / 'slurmctld.log'}",
        f"SlurmdLogFile={d / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",   # no cgroups: containers rarely delegate cgroup v2
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SchedulerType=sched/builtin",
        "SelectType=select/cons_tres",         # one CPU per task: both array tasks run at once on 2 cores
        "SelectTypeParameters=CR_CPU",
        "ReturnToService=2",
        "MpiDefault=none",
        "MinJobAge=600",                       # keep finished jobs visible to `scontrol show job`
        "MailProg=/bin/true",
        f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


class _Cluster:
    """The daemons of one test, their environment, and their logs for failure messages."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SQUEUE_"))}
        self.env["SLURM_CONF"] = str(d / "slurm.conf")

    def start(self, cmd: list[str], name: str) -> None:
        with open(self.d / f"{name}.out", "wb") as log:
            self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))

    def logs(self, n: int = 25) -> str:
        """The last n lines of each daemon's log, without the noise of the unused PMIx plugins."""
        out = []
        for p in sorted(self.d.glob("*.log")) + sorted(self.d.glob("*.out")):
            lines = [s for s in p.read_text(errors="replace").splitlines() if not re.search(r"pmix|MPI:", s, re.I)]
            out.append(f"--- {p}:\n" + "\n".join(lines[-n:]))
        return "\n".join(out)

    def slurm(self, *args: str) -> str:
        r = _run(list(args), self.env)
        assert r.returncode == 0, f"`{' '.join(args)}` failed: {r.stderr}\n{self.logs()}"
        return r.stdout

    def stop(self) -> None:
        """Cancel what is still queued, then SIGTERM each daemon (SIGKILL its process group if it hangs)."""
        try:
            if any(p.poll() is None for p in self.procs):
                _run(["scancel", "--user", str(os.geteuid())], self.env)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    r = _run(["squeue", "-h"], self.env)
                    if r.returncode != 0 or not r.stdout.strip():
                        break
                    time.sleep(1)
        except subprocess.TimeoutExpired:
            pass   # a hung controller: stop the daemons all the same
        for p in reversed(self.procs):   # slurmd, slurmctld (its slurmscriptd child follows it), munged
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def slurm_cluster(tmp_path: Path) -> Iterator[_Cluster]:
    """A running single-node SLURM with an idle node; stopped whatever happens."""
    if not (QUICK_DATA / "cifar-10-batches-py").is_dir() or not (QUICK_DATA / "nb201" / "nb201_200ep.csv").is_file():
        pytest.skip(f"`run_all.sh --quick` reads {QUICK_DATA} (CIFAR-10 subset, NB201 table), absent here")
    reason = _install_slurm()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("starting slurmd (which switches to the submitting user) needs root")
    d = tmp_path / "slurm"
    for sub in ("state", "spool"):
        (d / sub).mkdir(parents=True)
    cluster = _Cluster(d)
    try:
        node_line = _run(["slurmd", "-C"], cluster.env).stdout.splitlines()[0]   # NodeName=<host> CPUs=.. RealMemory=..
        if _has_auth_none():
            auth = ["AuthType=auth/none", "CredType=cred/none"]
        else:
            assert shutil.which("munged"), "this SLURM lacks auth/none and munged is not installed"
            key = d / "munge.key"
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
            sock = d / "munge.sock"
            cluster.start(["munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                           f"--pid-file={d / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
                           f"--seed-file={d / 'munged.seed'}"], "munged")
            auth = ["AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={sock}"]
            for _ in range(50):
                if sock.exists():
                    break
                time.sleep(0.1)
        (d / "slurm.conf").write_text(_slurm_conf(d, node_line, auth))
        cluster.start(["slurmctld", "-D", "-f", str(d / "slurm.conf")], "slurmctld")
        cluster.start(["slurmd", "-D", "-f", str(d / "slurm.conf")], "slurmd")
        deadline, state = time.monotonic() + NODE_UP_TIMEOUT_S, ""
        while time.monotonic() < deadline:
            r = _run(["sinfo", "-h", "-N", "-o", "%T"], cluster.env)
            state = r.stdout.strip()
            if r.returncode == 0 and state == "idle":
                break
            assert all(p.poll() is None for p in cluster.procs), f"a SLURM daemon exited:\n{cluster.logs()}"
            time.sleep(0.5)
        assert state == "idle", f"node not idle after {NODE_UP_TIMEOUT_S} s (sinfo: {state!r}):\n{cluster.logs()}"
        yield cluster
    finally:
        cluster.stop()


def test_run_all_slurm_runs_quick_slice(slurm_cluster: _Cluster, tmp_path: Path) -> None:
    """run_all.sh --slurm submits one array task per cell (its seeds one --seeds process) and returns; every
    task leaves a full result.json per seed and its output in the cell's log.txt."""
    runs = tmp_path / "runs"
    env = {**slurm_cluster.env, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    r = _run(["bash", str(ROOT / "run_all.sh"), "--slurm", "--quick", "--runs", str(runs),
              "--only", "|".join(LABELS), "--spaces", "nb201", "--datasets", "cifar10", "--seeds", "0 1"], env, timeout=60)
    assert r.returncode == 0, f"run_all.sh --slurm failed: {r.stdout}{r.stderr}"
    m = re.search(r"(\d+)\s*$", r.stdout)
    assert m, f"no job id in sbatch's output {r.stdout!r}"
    job = m.group(1)
    assert time.monotonic() - t0 < 30, "run_all.sh --slurm should return right after submitting"
    jobs = (runs / "jobs.txt").read_text().splitlines()
    assert len(jobs) == len(LABELS) and all("--seeds 0 1 " in x and "/seed{seed} " in x for x in jobs)
    assert f"#SBATCH --array=1-{len(LABELS)}\n" in (runs / "run_all.sbatch").read_text()

    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while slurm_cluster.slurm("squeue", "-h", "-j", job, "-o", "%i %T").strip():
        assert time.monotonic() < deadline, f"jobs of array {job} unfinished after {JOBS_TIMEOUT_S} s"
        time.sleep(2)

    tasks = {}
    for line in slurm_cluster.slurm("scontrol", "-o", "show", "job", job).splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        tasks[int(fields["ArrayTaskId"])] = (fields["JobState"], fields["ExitCode"])
    logs = "\n".join(f"--- {p}:\n{_tail(p.read_text(errors='replace'))}" for p in sorted(runs.rglob("log.txt")))
    assert tasks == {i: ("COMPLETED", "0:0") for i in range(1, len(LABELS) + 1)}, \
        f"array {job}: {tasks}\n{logs}\n{slurm_cluster.logs()}"
    for i in tasks:
        assert (runs / f"slurm-{job}_{i}.out").is_file(), "each array task writes its SLURM output file"

    for label, seed in ((lab, s) for lab in LABELS for s in (0, 1)):
        assert (runs / "nb201" / label / "cifar10" / "log.txt").is_file()  # the batched process's output
        assert json.loads((runs / "nb201" / label / "cifar10" / f"seed{seed}" / "args.json").read_text())["seed"] == seed
        result = json.loads((runs / "nb201" / label / "cifar10" / f"seed{seed}" / "result.json").read_text())
        assert NB201_ARCH.match(result["genotype"]), result["genotype"]
        nb201 = result["nb201"]
        assert isinstance(nb201, dict) and 0 < nb201["cifar10_test"] <= 100, nb201
        assert result["epochs"] == 2
