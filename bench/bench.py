#!/usr/bin/env python3
"""fleet's benchmark: `fleet exec` against pssh, pdsh and clush in one run, on a lab of real
sshd hosts started by `fleet-lab`, plus the controller cost of `fleet upgrade`.

    python3 bench/bench.py [--sizes 50,200,500] [--runs 3] [--commands true]
                           [--default-kex-up-to 200] [--big 1000] [--upgrade-hosts 50]
                           [--wan 20,100] [--wan-sizes 200,1000] [--wan-runs 2]
                           [--copy-sizes 50,200] [--copy-mb 30] [--copy-runs 2]
                           [--copy-pscp-up-to 50] [--copy-on-disk]
                           [--only exec,wan,big,upgrade,copy] [--results-dir DIR] [--no-build]

(`--commands true,'uname -a'` adds the second command's rows, `--wan 0,20,100` the
hand-tuned fleet rows on loopback; each adds about five minutes, past the 25 minutes
`make bench` keeps to. An empty list or 0 skips a part (`--sizes ''`, `--wan ''`,
`--copy-sizes ''`, `--big 0`, `--upgrade-hosts 0`); `--only copy` runs the copy rows alone,
`--results-dir /tmp/x` keeps a trial run out of bench/results.)

For every host count N, each tool runs once as a warm-up (with the first command; the
default-kex variants below are warmed by their tool's curve25519 warm-up) and then
`--runs` times per command, the tools interleaved round by round in an order shuffled every
round (seeded by the round), so that machine noise hits all of them alike; before each run the
lab settles (no sshd still runs a session of the previous tool's). Each run records the wall time, the
tool's user+sys CPU (its whole process tree, from wait4), its peak RSS, and the CPU the lab's
sshd spent (listeners and every session below them, from /proc). A run counts only if all N
hosts succeeded, checked from the tool's own output.

OpenSSH-based tools run twice: with the client's default key exchange, and with
`KexAlgorithms curve25519-sha256`. With the default (post-quantum) exchange the OpenSSH client
spends 90 to 150 ms of CPU per host, so one run at N = 200 takes 12 to 19 s and one at N = 500
~50 s on 2 cores, whatever the command. To keep `make bench` under 20 minutes those variants run
with the first command only, and only up to `--default-kex-up-to` hosts (200). fleet uses
russh's default order (its post-quantum hybrid first, then curve25519).

`--wan RTTS` then runs `true` through the lab's delaying proxy (`fleet-lab up --rtt`), per
round-trip time and `--wan-sizes` host count: fleet with its defaults (the adaptive handshake
window), fleet with the window fixed by hand (`--max-handshakes 64`, the old default, and N,
every host at once: the lab-only ceiling), and the OpenSSH tools with curve25519. There the
limit is round trips: the floor is ROUND_TRIPS x RTT (one exec's handshake and command) plus
the loopback floor (the sshd side's CPU over the cores). The proxy's own CPU is reported.

`--copy-sizes` then copies one `--copy-mb` MB file of random bytes to every host, per host
count: `fleet copy --force` (so every run sends the bytes: without it fleet skips a file the
host has with the same SHA-256) against parallel-scp, pdcp and clush --copy, the OpenSSH-based
ones with curve25519. The lab is started with `--private-dirs` (each sshd in a mount namespace
of its own, where DIR/private shows that host's DIR/hosts/<name>/private; needs root), and is
itself a tmpfs (`--copy-on-disk`: not), so that 6 GB per run at 200 hosts measure the tools and
not this machine's one disk's writeback. Every tool copies into DIR/private; after each run every
host's directory must hold the file with its size, and for 3 hosts its SHA-256, or the run does
not count; the directories are emptied before each run. One warm-up round with a 1 MB file per
lab, then `--copy-runs` rounds, tools interleaved as above. The sshd figure waits for the host
side's sessions to end, past the tool's exit. The table adds MB/s (bytes sent to all hosts over
the wall time), the client's user / sys split and its CPU per GB sent; its floor is, as above,
the sshd side's CPU over the cores. Each transfer's host side differs: fleet runs a shell that
writes a temporary file with `cat`, checks its size and SHA-256 (`sha256sum`), syncs it (free
on the tmpfs) and renames it;
scp (parallel-scp, clush) talks SFTP to sftp-server; pdcp starts `pdcp -z` on the host. parallel-scp
always runs `scp -qC`: zlib compression, which random bytes do not repay (it costs the client
~28 ms of CPU per MB here, 2 minutes a run at 200 hosts); it is measured as shipped, and only up to
`--copy-pscp-up-to` hosts (50: it is never the best peer, and its 200-host rows alone would add
~4 minutes to `make bench`; `--copy-pscp-up-to 200` has them). At the defaults the copy rows take
about 7 minutes (fleet's own runs 2 of them).

`--big N` then starts a lab of N hosts (1000) and checks, in one run, that `fleet exec true`
completes on all of them. The upgrade benchmark upgrades 2 fake CiviCRM sites on each of 50 hosts whose
fakes take no time: its CPU is the controller's own cost per journaled (site, step).

Results: `bench/results/<date>-<host>.jsonl` (one JSON object per run) and
`bench/results/<date>-<host>.md` (medians, ratios to fleet, and the issue's targets met or
missed), copied to `bench/results/latest.md`.
"""

import argparse
import random
import datetime
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
FLEET = os.path.join(RELEASE, "fleet")
FLEET_LAB = os.path.join(RELEASE, "fleet-lab")
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
# Round trips of one `exec` from connect to exit status: TCP, version + key exchange init,
# the exchange, userauth (publickey with its signature), channel open, exec and its status.
ROUND_TRIPS = 7


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools():
    """Installs pssh, pdsh and clustershell from Debian's packages when missing."""
    wanted = {"parallel-ssh": "pssh", "pdsh": "pdsh", "clush": "clustershell", "/usr/bin/time": "time"}
    missing = [pkg for exe, pkg in wanted.items() if shutil.which(exe) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        log(f"installing {' '.join(missing)}")
        sh(sudo + ["apt-get", "update", "-qq"])
        sh(sudo + ["apt-get", "install", "-y", "-qq"] + missing, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def build():
    log("building fleet (release)")
    sh(["cargo", "build", "--release", "--workspace", "--bins"], cwd=ROOT)


class Lab:
    """A fleet-lab of n hosts, with host files for every tool."""

    def __init__(self, n, sites=0, rtt_ms=0, private_dirs=False, tmpfs_bytes=0):
        """`private_dirs`: every host shows its own DIR/hosts/<name>/private at DIR/private
        (`fleet-lab up --private-dirs`: each sshd in a mount namespace of its own; needs root).
        `tmpfs_bytes`: the lab directory is a tmpfs of that size (root), so what the copy rows
        write stays in memory and is not written back to this machine's one disk."""
        self.dir = tempfile.mkdtemp(prefix=f"fleet-bench-{n}-")
        self.tmpfs = False
        if tmpfs_bytes:
            sh(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_bytes // (1 << 20) + 1}m,mode=0755", "tmpfs", self.dir])
            self.tmpfs = True
        cmd = [FLEET_LAB, "up", "--hosts", str(n), "--dir", self.dir]
        self.rtt_ms = rtt_ms
        if rtt_ms:
            cmd += ["--rtt", f"{rtt_ms}ms"]
        if sites:
            cmd += ["--sites-per-host", str(sites), "--civicrm", "5.69.0"]
        if private_dirs:
            cmd += ["--private-dirs"]
        try:
            sh(cmd, stdout=subprocess.DEVNULL)
        except BaseException:
            self._unmount()
            raise
        self.n = n
        self.pids, self.addrs, self.names = [], [], []
        record_text = open(os.path.join(self.dir, "lab.toml")).read()
        head = record_text.split("[[host]]")[0]
        m = re.search(r"\[proxy\][^\[]*?pid = (\d+)", head, re.S)
        self.proxy_pid = int(m.group(1)) if m else None
        for block in record_text.split("[[host]]")[1:]:
            self.addrs.append(re.search(r'address = "([^"]+)"', block).group(1))
            self.names.append(re.search(r'name = "([^"]+)"', block).group(1))
            m = re.search(r"pid = (\d+)", block)
            if m:
                self.pids.append(int(m.group(1)))
        port = re.search(r"port = (\d+)", open(os.path.join(self.dir, "lab.toml")).read()).group(1)
        self.inventory = os.path.join(self.dir, "inventory.toml")
        self.ssh_config = os.path.join(self.dir, "ssh_config")
        self.ssh_config_curve = os.path.join(self.dir, "ssh_config_curve")
        with open(self.ssh_config) as f, open(self.ssh_config_curve, "w") as g:
            g.write(f.read() + "    KexAlgorithms curve25519-sha256\n")
        self.hosts_pssh = os.path.join(self.dir, "hosts_pssh.txt")
        self.hosts_plain = os.path.join(self.dir, "hosts_plain.txt")
        with open(self.hosts_pssh, "w") as f:
            f.writelines(f"{a}:{port}\n" for a in self.addrs)
        with open(self.hosts_plain, "w") as f:
            f.writelines(f"{a}\n" for a in self.addrs)

    def sshd_cpu(self):
        """CPU seconds of every sshd listener and all it has waited for."""
        total = 0
        for pid in self.pids:
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime stime cutime cstime are fields 14-17 (1-based) of stat.
            total += sum(int(x) for x in fields[11:15])
        return total / TICK

    def proxy_cpu(self):
        """CPU seconds the delaying proxy spent so far (0 without one)."""
        if not self.proxy_pid:
            return 0.0
        try:
            fields = open(f"/proc/{self.proxy_pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return sum(int(x) for x in fields[11:13]) / TICK

    def settle(self, limit=5.0):
        """Waits (up to `limit` s) until no sshd of the lab still runs a session: a tool that
        exits before the host side of its sessions has finished would leave their CPU to
        the next tool's run (and its sshd figure, counted when they are reaped)."""
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            busy = False
            for pid in self.pids:
                try:
                    if open(f"/proc/{pid}/task/{pid}/children").read().strip():
                        busy = True
                        break
                except OSError:
                    continue
            if not busy:
                return
            time.sleep(0.02)

    def private(self, name=None):
        """DIR/private (the path every host shows its own directory at), or with `name` that
        host's own directory as this machine sees it."""
        return os.path.join(self.dir, "private") if name is None else os.path.join(self.dir, "hosts", name, "private")

    def clean_private(self):
        """Empties every host's private directory (the files a copy run left, temporary
        files of a failed one included)."""
        for name in self.names:
            d = self.private(name)
            for e in os.scandir(d):
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    os.unlink(e.path)

    def _unmount(self):
        if self.tmpfs:
            subprocess.run(["umount", self.dir], stderr=subprocess.DEVNULL)
            if os.path.ismount(self.dir):
                subprocess.run(["umount", "-l", self.dir])
            self.tmpfs = False

    def down(self):
        subprocess.run([FLEET_LAB, "down", "--dir", self.dir], stdout=subprocess.DEVNULL)
        self._unmount()
        shutil.rmtree(self.dir, ignore_errors=True)


def tools(lab, n, cmd, default_kex_up_to):
    """(name, argv, env, success check) for every tool at parallelism n."""
    quoted = cmd

    def count_ok_fleet(out, err, rc):
        return sum(1 for line in out.splitlines() if json.loads(line).get("status") == "ok")

    def count_ok_pssh(out, err, rc):
        return len(re.findall(r"\[SUCCESS\]", out))

    def count_ok_pdsh(out, err, rc):
        # pdsh reports each failing host on stderr; with -S its exit code is the largest rc.
        failed = len(re.findall(r"exited with exit code|ssh: |Connection|Permission denied", err))
        return lab.n - failed if rc == 0 else lab.n - max(failed, 1)

    def count_ok_clush(out, err, rc):
        failed = len(re.findall(r"exited with exit code|ssh: |Connection", err))
        return lab.n - failed if rc == 0 else lab.n - max(failed, 1)

    out = [("fleet", [FLEET, "-i", lab.inventory, "exec", "--json", "-f", str(n), "--", quoted], {}, count_ok_fleet)]
    kexes = [("curve25519", lab.ssh_config_curve)]
    if n <= default_kex_up_to:
        kexes.insert(0, ("default", lab.ssh_config))
    for kex, cfg in kexes:
        out.append((f"pssh/{kex}", ["parallel-ssh", "-h", lab.hosts_pssh, "-p", str(n), "-t", "300", "-x", f"-F {cfg}", quoted], {}, count_ok_pssh))
        out.append((f"pdsh/{kex}", ["pdsh", "-S", "-R", "ssh", "-f", str(n), "-u", "300", "-w", f"^{lab.hosts_plain}", quoted], {"PDSH_SSH_ARGS_APPEND": f"-F {cfg}"}, count_ok_pdsh))
        out.append((f"clush/{kex}", ["clush", "-S", "-f", str(n), "--hostfile", lab.hosts_plain, "-o", f"-F {cfg}", "-u", "300", quoted], {}, count_ok_clush))
    return out


def round_order(entries, rnd):
    """The tools' order in round `rnd`: shuffled, reproducibly (seeded by the round), so that
    no tool always runs first, last, or right after the same other tool."""
    order = list(entries)
    random.Random(rnd).shuffle(order)
    return order


def measure(lab, argv, env, check, settle_after=False):
    """Runs argv once: wall time, exit code, output, hosts ok, and from wait4 the CPU and peak
    RSS of the tool's process tree, plus the CPU the lab's sshd spent meanwhile (with
    `settle_after`, also what the host side still spends once the tool has exited, until
    its sessions are gone: not in the wall time)."""
    lab.settle()
    sshd0, proxy0 = lab.sshd_cpu(), lab.proxy_cpu()
    # GNU time starts the tool, so the tool's peak RSS is not inflated by this Python
    # process's memory (the kernel counts the pre-exec image of a forked child).
    with tempfile.NamedTemporaryFile("w+") as usage, tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-o", usage.name, "-f", "%U %S %M"] + argv, stdout=out_f, stderr=err_f,
                           env={**os.environ, **env, "FLEET_NO_PROGRESS": "1"}, text=True)
        wall = time.perf_counter() - t0
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
        fields = open(usage.name).read().split()[-3:]
    user, system, rss = float(fields[0]), float(fields[1]), int(fields[2])
    if settle_after:
        lab.settle(limit=30.0)
    return {
        "wall": wall,
        "rc": p.returncode,
        "out": out,
        "err": err,
        "ok": check(out, err, p.returncode),
        "cpu": user + system,
        "user": user,
        "sys": system,
        "rss": rss,
        "sshd": lab.sshd_cpu() - sshd0,
        "proxy": lab.proxy_cpu() - proxy0,
    }


def run_benchmark(sizes, commands, runs, default_kex_up_to, results):
    for n in sizes:
        log(f"lab of {n} hosts")
        lab = Lab(n)
        try:
            for ci, cmd in enumerate(commands):
                # OpenSSH's default key exchange only with the first command: its cost is the
                # client's key exchange, whatever the command (see the module doc).
                entries = tools(lab, n, cmd, default_kex_up_to if ci == 0 else 0)
                # One warm-up round per lab, with its first command.
                for rnd in range(0 if ci == 0 else 1, runs + 1):
                    order = round_order(entries, rnd)
                    for name, argv, env, check in order:
                        # The curve25519 warm-up of the same tool already warmed its binaries
                        # and the lab; a default-kex warm-up would only cost time.
                        if rnd == 0 and name.endswith("/default"):
                            continue
                        record(results, n, cmd, name, rnd, measure(lab, argv, env, check))
        finally:
            lab.down()


def record(results, n, cmd, name, rnd, m, rtt_ms=0, wan=False, extra=None):
    wall, cpu, sshd, ok, err = m["wall"], m["cpu"], m["sshd"], m["ok"], m["err"]
    results.append({
        "n": n, "command": cmd, "tool": name, "round": rnd, "warmup": rnd == 0, "rtt_ms": rtt_ms, "wan": wan,
        "wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "peak_rss_kib": m["rss"],
        "sshd_cpu_s": round(sshd, 4), "proxy_cpu_s": round(m.get("proxy", 0.0), 4),
        "hosts_ok": ok, "exit": m["rc"], "counted": rnd > 0 and ok == n,
    } | (extra or {}))
    rate = f" {extra['bytes'] / wall / 1e6:6.0f}MB/s" if extra and "bytes" in extra else ""
    log(f"{'RTT ' + str(rtt_ms) + 'ms ' if rtt_ms else ''}N={n} {cmd!r} {name:18} wall {wall:6.2f}s cpu {cpu:6.3f}s rss {m['rss'] / 1024:5.1f}MiB sshd {sshd:6.2f}s{rate} ok {ok}/{n}"
        + ("" if rnd else " (warm-up)"))
    if ok != n:
        log(f"  {name} failed on {n - ok} host(s): {err.strip()[-300:]}")


def wan_tools(lab, n):
    """The WAN rows: fleet by default and hand-tuned, the OpenSSH tools with curve25519."""
    base = tools(lab, n, "true", 0)
    fleet_argv = base[0][1]
    out = [base[0]]
    for fixed, label in ((64, "fleet --max-handshakes 64"), (n, f"fleet --max-handshakes {n}")):
        argv = fleet_argv[:fleet_argv.index("exec") + 1] + ["--max-handshakes", str(fixed)] + fleet_argv[fleet_argv.index("exec") + 1:]
        out.append((label, argv, {}, base[0][3]))
    return out + base[1:]


def run_wan(rtts, sizes, runs, results):
    """`true` through the delaying proxy, per round-trip time and host count (0: no proxy)."""
    for rtt in rtts:
        for n in sizes:
            log(f"lab of {n} hosts behind a {rtt} ms round trip")
            lab = Lab(n, rtt_ms=rtt)
            try:
                entries = wan_tools(lab, n)
                # No warm-up round: the loopback part warmed the binaries, and each of these
                # runs costs several seconds of mostly waiting.
                for rnd in range(1, runs + 1):
                    order = round_order(entries, rnd)
                    for name, argv, env, check in order:
                        record(results, n, "true", name, rnd, measure(lab, argv, env, check), rtt_ms=rtt, wan=True)
            finally:
                lab.down()


def run_big(n, results):
    """`fleet exec true` on a lab of n hosts (1000): every host must answer."""
    log(f"lab of {n} hosts for the large run")
    lab = Lab(n)
    try:
        name, argv, env, check = tools(lab, n, "true", 0)[0]
        record(results, n, "true", name, 1, measure(lab, argv, env, check))
    finally:
        lab.down()


COPY_WARMUP_BYTES = 1_000_000
# Hosts whose copy is also checked by SHA-256 after every run (first, last, one by the round).
COPY_HASHED_HOSTS = 3


def copy_tools(lab, n, payload, pscp_up_to):
    """(name, argv, env, success check) of every copy tool at parallelism n: `payload` into
    DIR/private on every host; the OpenSSH-based ones with curve25519 (their default kex only
    adds the client's key exchange, as in the exec rows); parallel-scp only up to `pscp_up_to`
    hosts."""
    dest = lab.private()

    def count_ok_fleet(out, err, rc):
        return sum(1 for line in out.splitlines() if line.startswith("{") and json.loads(line).get("status") == "ok"
                   and json.loads(line).get("written") == 1)

    def count_ok_pscp(out, err, rc):
        return len(re.findall(r"\[SUCCESS\]", out))

    def count_ok_rc(out, err, rc):
        # pdcp and clush name each failing host on stderr; their exit code is non-zero then.
        failed = len(re.findall(r"exited with exit code|ssh: |Connection|Permission denied|pdcp@|No such file", err))
        return lab.n - failed if rc == 0 else lab.n - max(failed, 1)

    cfg = lab.ssh_config_curve
    out = [
        ("fleet", [FLEET, "-i", lab.inventory, "copy", "--force", "--json", "-f", str(n), payload, dest], {}, count_ok_fleet),
        # pdcp starts `pdcp -z DEST` on each host through ssh (the hosts are this machine: same binary).
        ("pdcp/curve25519", ["pdcp", "-R", "ssh", "-f", str(n), "-w", f"^{lab.hosts_plain}", payload, dest], {"PDSH_SSH_ARGS_APPEND": f"-F {cfg}"}, count_ok_rc),
        ("clush --copy/curve25519", ["clush", "-S", "-f", str(n), "--hostfile", lab.hosts_plain, "-o", f"-F {cfg}", "-u", "300", "--copy", payload, "--dest", dest], {}, count_ok_rc),
    ]
    if n <= pscp_up_to:
        # parallel-scp runs `scp -qC` per host: zlib compression is always on (see the module doc).
        out.append(("parallel-scp/curve25519", ["parallel-scp", "-h", lab.hosts_pssh, "-p", str(n), "-t", "300", "-x", f"-F {cfg}", payload, dest], {}, count_ok_pscp))
    return out


def sha256_file(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_payload(path, size):
    """`size` random bytes at `path` (read back once, so the client finds it in the page cache)."""
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            left -= len(chunk)
    return sha256_file(path)


def verify_copies(lab, name, size, sha, rnd):
    """Hosts whose private directory holds `name` with `size` bytes (and, for a sample, the
    SHA-256 `sha`), and a description of the first few that do not."""
    hashed = {0, lab.n - 1, rnd % lab.n} if lab.n > 2 else set(range(lab.n))
    ok, bad = 0, []
    for i, host in enumerate(lab.names):
        path = os.path.join(lab.private(host), name)
        try:
            got = os.stat(path).st_size
        except OSError:
            bad.append(f"{host}: missing")
            continue
        if got != size:
            bad.append(f"{host}: {got} of {size} bytes")
        elif i in hashed and sha256_file(path) != sha:
            bad.append(f"{host}: SHA-256 mismatch")
        else:
            ok += 1
    return ok, bad[:5]


def run_copy(sizes, mb, runs, results, on_disk=False, pscp_up_to=50):
    """`fleet copy` of one `mb` MB file (random bytes) against parallel-scp, pdcp and clush
    --copy, per host count: a warm-up round with a 1 MB file, then `runs` rounds, tools
    interleaved; every host's private directory checked after each run, emptied before the next."""
    size = mb * 1_000_000
    work = tempfile.mkdtemp(prefix="fleet-bench-copy-")
    try:
        payload = os.path.join(work, f"payload-{mb}MB.bin")
        warm = os.path.join(work, "payload-warm-up.bin")
        sha, warm_sha = make_payload(payload, size), make_payload(warm, COPY_WARMUP_BYTES)
        for n in sizes:
            log(f"lab of {n} hosts with private directories for {mb} MB copies" + (" (on disk)" if on_disk else " (tmpfs)"))
            lab = Lab(n, private_dirs=True, tmpfs_bytes=0 if on_disk else n * (size + (1 << 20)) + (256 << 20))
            try:
                for rnd in range(0, runs + 1):
                    file, fsize, fsha = (warm, COPY_WARMUP_BYTES, warm_sha) if rnd == 0 else (payload, size, sha)
                    for name, argv, env, check in round_order(copy_tools(lab, n, file, pscp_up_to), rnd):
                        lab.clean_private()
                        m = measure(lab, argv, env, check, settle_after=True)
                        there, bad = verify_copies(lab, os.path.basename(file), fsize, fsha, rnd)
                        extra = {"copy": True, "copy_mb": mb, "bytes_per_host": fsize, "bytes": n * fsize,
                                 "cpu_user_s": round(m["user"], 4), "cpu_sys_s": round(m["sys"], 4),
                                 "tool_ok": m["ok"], "hosts_with_file": there}
                        if name == "fleet":
                            durations = sorted(json.loads(l).get("duration_ms", 0) for l in m["out"].splitlines() if l.startswith("{"))
                            if durations:
                                extra |= {"host_ms_min": durations[0], "host_ms_median": statistics.median(durations), "host_ms_max": durations[-1]}
                        m["ok"] = min(m["ok"], there)
                        if bad:
                            m["err"] += "\nnot on every host: " + "; ".join(bad)
                        record(results, n, f"copy {mb} MB", name, rnd, m, extra=extra)
                lab.clean_private()
            finally:
                lab.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_upgrade_benchmark(hosts, results):
    """Controller cost of `fleet upgrade`: 50 hosts whose fakes take no time."""
    import resource

    log(f"upgrade controller: lab of {hosts} hosts x 2 sites")
    lab = Lab(hosts, sites=2)
    state = tempfile.mkdtemp(prefix="fleet-bench-state-")
    try:
        tarball = os.path.join(lab.dir, "civicrm-5.70.0-drupal.tar.gz")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run([FLEET, "-i", lab.inventory, "--state-dir", state, "upgrade", "--tarball", tarball, "--batches", "1,100%", "-f", str(hosts)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "FLEET_NO_PROGRESS": "1"})
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        db = sqlite3.connect(os.path.join(state, "journal.sqlite"))
        steps = db.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
        sites = db.execute("SELECT COUNT(*) FROM sites WHERE status = 'upgraded'").fetchone()[0]
        row = {"bench": "upgrade-controller", "hosts": hosts, "sites_upgraded": sites, "steps": steps, "wall_s": round(wall, 3),
               "cpu_s": round(cpu, 3), "cpu_ms_per_step": round(1000 * cpu / max(steps, 1), 3), "exit": p.returncode}
        results.append(row)
        log(f"upgrade: {sites} sites, {steps} journaled steps, wall {wall:.2f}s, controller cpu {cpu:.2f}s = {row['cpu_ms_per_step']} ms/step")
    finally:
        lab.down()
        shutil.rmtree(state, ignore_errors=True)


def medians(results, rtt=0, wan=False):
    """{(n, command): {tool: medians of its counted runs}}: the loopback rows, or with `wan`
    the proxied ones at round-trip time `rtt` (ms; 0 is the same rows without a proxy)."""
    groups = {}
    for r in results:
        if r.get("bench") or r.get("copy") or not r["counted"] or r.get("wan", False) != wan or r.get("rtt_ms", 0) != rtt:
            continue
        groups.setdefault((r["n"], r["command"]), {}).setdefault(r["tool"], []).append(r)
    keys = ("wall_s", "cpu_s", "peak_rss_kib", "sshd_cpu_s", "proxy_cpu_s")
    return {
        key: {t: {k: statistics.median(x.get(k, 0) for x in rs) for k in keys} | {"runs": len(rs)}
              for t, rs in by_tool.items()}
        for key, by_tool in groups.items()
    }


def copy_medians(results):
    """{(n, MB per host): {tool: medians of its counted copy runs}}."""
    groups = {}
    for r in results:
        if r.get("copy") and r["counted"]:
            groups.setdefault((r["n"], r["copy_mb"]), {}).setdefault(r["tool"], []).append(r)
    keys = ("wall_s", "cpu_s", "cpu_user_s", "cpu_sys_s", "peak_rss_kib", "sshd_cpu_s", "bytes")
    return {
        key: {t: {k: statistics.median(x[k] for x in rs) for k in keys} | {"runs": len(rs)} for t, rs in by_tool.items()}
        for key, by_tool in groups.items()
    }


def wan_rtts(results):
    return sorted({r.get("rtt_ms", 0) for r in results if r.get("wan")})


def targets(results):
    """The issue's targets, each read off this run's medians: met, or missed by how much."""
    lines = ["\n## Targets\n", "| target | measured | limit | verdict |", "|---|---|---|---|"]

    def row(what, value, limit, fmt="{:.2f}"):
        if value is None:
            lines.append(f"| {what} | not measured | {fmt.format(limit)} | - |")
            return
        verdict = "met" if value <= limit else f"**missed by {100 * (value / limit - 1):.0f}%**"
        lines.append(f"| {what} | {fmt.format(value)} | {fmt.format(limit)} | {verdict} |")

    med = medians(results)
    for (n, cmd), m in sorted(med.items()):
        f = m.get("fleet")
        if not f:
            continue
        if n == 200:
            pssh = m.get("pssh/default")
            row(f"N={n} `{cmd}`: fleet wall / pssh (default kex) wall", pssh and f["wall_s"] / pssh["wall_s"], 0.2)
            curve = [v["wall_s"] for t, v in m.items() if t.endswith("/curve25519")]
            row(f"N={n} `{cmd}`: fleet wall / best OpenSSH peer (curve25519) wall", f["wall_s"] / min(curve) if curve else None, 0.6)
            row(f"N={n} `{cmd}`: fleet wall / floor (its run's sshd CPU / {CORES} cores)",
                f["wall_s"] / (f["sshd_cpu_s"] / CORES) if f["sshd_cpu_s"] else None, 1.1)
        row(f"N={n} `{cmd}`: fleet client CPU per host, ms", 1000 * f["cpu_s"] / n, 1.0)
        if n in (200, 500):
            row(f"N={n} `{cmd}`: fleet peak RSS, MiB", f["peak_rss_kib"] / 1024, 25.0 if n == 200 else 40.0, "{:.1f}")
    for rtt in wan_rtts(results):
        for (n, cmd), m in sorted(medians(results, rtt, wan=True).items()):
            f = m.get("fleet")
            tuned = [v["wall_s"] for t, v in m.items() if t.startswith("fleet --max-handshakes")]
            peers = [v["wall_s"] for t, v in m.items() if t.endswith("/curve25519")]
            if not f:
                continue
            row(f"RTT {rtt} ms, N={n}: fleet (defaults) wall / its best hand-tuned `--max-handshakes` wall",
                f["wall_s"] / min(tuned) if tuned else None, 1.05)
            row(f"RTT {rtt} ms, N={n}: fleet (defaults) wall / best OpenSSH peer (curve25519) wall",
                f["wall_s"] / min(peers) if peers else None, 1.0)
    for (n, mb), m in sorted(copy_medians(results).items()):
        f = m.get("fleet")
        peers = {t: v["wall_s"] for t, v in m.items() if t.endswith("/curve25519")}
        if n != 200 or not f:
            continue
        what = f"N={n} copy of {mb} MB: fleet wall / best OpenSSH peer (curve25519) wall"
        if not peers:
            row(what, None, 0.8)
            continue
        best = min(peers, key=peers.get)
        value = f["wall_s"] / peers[best]
        verdict = "met" if value <= 0.8 else f"**missed by {100 * (value / 0.8 - 1):.0f}%**"
        lines.append(f"| {what} | {value:.2f} (fleet {f['wall_s']:.2f} s, {best} {peers[best]:.2f} s) | 0.80 | {verdict} |")
    for r in results:
        if not r.get("bench") and not r.get("wan") and not r.get("copy") and r["n"] >= 1000 and r["tool"] == "fleet" and not r["warmup"]:
            lines.append(f"| N={r['n']} `true`: fleet hosts ok | {r['hosts_ok']}/{r['n']} in {r['wall_s']:.1f} s, "
                         f"{r['peak_rss_kib'] / 1024:.0f} MiB | all | {'met' if r['hosts_ok'] == r['n'] else '**missed**'} |")
    for r in results:
        if r.get("bench") == "upgrade-controller":
            row(f"upgrade controller CPU per (site, step), ms ({r['hosts']} hosts)", r["cpu_ms_per_step"], 5.0, "{:.2f}")
    return "\n".join(lines) + "\n"


def ratio(a, b, fmt):
    return fmt.format(a / b) if b else "-"


def table(results):
    """Markdown: medians of counted runs, ratios to fleet."""
    lines = []
    for (n, cmd), med in sorted(medians(results).items()):
        f = med.get("fleet")
        lines.append(f"\n### N = {n}, `{cmd}`\n")
        lines.append("| tool | runs | wall s | wall / fleet | client CPU s | CPU ms/host | CPU / fleet | peak RSS MiB | sshd CPU s | floor s (sshd CPU / cores) | wall / floor |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for tool, m in sorted(med.items(), key=lambda kv: kv[1]["wall_s"]):
            floor = m["sshd_cpu_s"] / CORES
            lines.append(
                f"| {tool} | {m['runs']} | {m['wall_s']:.2f} | {m['wall_s'] / f['wall_s']:.2f}x | {m['cpu_s']:.3f} | {1000 * m['cpu_s'] / n:.2f} | "
                f"{ratio(m['cpu_s'], f['cpu_s'], '{:.1f}x')} | {m['peak_rss_kib'] / 1024:.1f} | {m['sshd_cpu_s']:.2f} | {floor:.2f} | {ratio(m['wall_s'], floor, '{:.2f}')} |"
                if f else f"| {tool} | {m['runs']} | {m['wall_s']:.2f} | - | {m['cpu_s']:.3f} | - | - | {m['peak_rss_kib'] / 1024:.1f} | {m['sshd_cpu_s']:.2f} | {floor:.2f} | - |"
            )
    for rtt in wan_rtts(results):
        for (n, cmd), med in sorted(medians(results, rtt, wan=True).items()):
            f = med.get("fleet")
            where = "loopback, no proxy" if rtt == 0 else "delaying proxy"
            lines.append(f"\n### RTT {rtt} ms ({where}), N = {n}, `{cmd}`\n")
            lines.append("| tool | runs | wall s | wall / fleet | client CPU s | sshd CPU s | proxy CPU s | floor s (round trips x RTT + sshd CPU / cores) | wall / floor |")
            lines.append("|---|---|---|---|---|---|---|---|---|")
            for tool, m in sorted(med.items(), key=lambda kv: kv[1]["wall_s"]):
                floor = ROUND_TRIPS * rtt / 1000 + m["sshd_cpu_s"] / CORES
                lines.append(
                    f"| {tool} | {m['runs']} | {m['wall_s']:.2f} | {ratio(m['wall_s'], f['wall_s'], '{:.2f}x') if f else '-'} | {m['cpu_s']:.3f} | "
                    f"{m['sshd_cpu_s']:.2f} | {m['proxy_cpu_s']:.2f} | {floor:.2f} | {ratio(m['wall_s'], floor, '{:.2f}')} |"
                )
    for (n, mb), med in sorted(copy_medians(results).items()):
        f = med.get("fleet")
        any_m = next(iter(med.values()))
        lines.append(f"\n### N = {n}, copy of a {mb} MB file ({any_m['bytes'] / 1e9:.2f} GB sent)\n")
        lines.append("| tool | runs | wall s | wall / fleet | MB/s | client CPU s | user / sys s | CPU s per GB sent | CPU / fleet | peak RSS MiB | sshd CPU s | floor s (sshd CPU / cores) | wall / floor |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for tool, m in sorted(med.items(), key=lambda kv: kv[1]["wall_s"]):
            floor = m["sshd_cpu_s"] / CORES
            lines.append(
                f"| {tool} | {m['runs']} | {m['wall_s']:.2f} | {ratio(m['wall_s'], f['wall_s'], '{:.2f}x') if f else '-'} | {m['bytes'] / m['wall_s'] / 1e6:.0f} | "
                f"{m['cpu_s']:.2f} | {m['cpu_user_s']:.2f} / {m['cpu_sys_s']:.2f} | {m['cpu_s'] / (m['bytes'] / 1e9):.2f} | {ratio(m['cpu_s'], f['cpu_s'], '{:.1f}x') if f else '-'} | "
                f"{m['peak_rss_kib'] / 1024:.1f} | {m['sshd_cpu_s']:.2f} | {floor:.2f} | {ratio(m['wall_s'], floor, '{:.2f}')} |"
            )
    for r in results:
        if r.get("bench") == "upgrade-controller":
            lines.append(f"\n### `fleet upgrade` controller, {r['hosts']} hosts\n")
            lines.append(f"{r['sites_upgraded']} sites upgraded, {r['steps']} journaled steps, wall {r['wall_s']} s, controller CPU {r['cpu_s']} s: **{r['cpu_ms_per_step']} ms per (site, step)**")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,200,500")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--commands", default="true")
    ap.add_argument("--default-kex-up-to", type=int, default=200, help="largest N for OpenSSH's default key exchange")
    ap.add_argument("--big", type=int, default=1000, help="hosts of the large fleet-only run (0: none)")
    ap.add_argument("--upgrade-hosts", type=int, default=50)
    ap.add_argument("--wan", default="20,100", help="round-trip times (ms) of the proxied runs; 0: the same rows on loopback (empty: none)")
    ap.add_argument("--wan-sizes", default="200,1000")
    ap.add_argument("--wan-runs", type=int, default=2)
    ap.add_argument("--copy-sizes", default="50,200", help="host counts of the `fleet copy` rows (empty: none)")
    ap.add_argument("--copy-mb", type=int, default=30, help="size of the copied file, MB (10^6 bytes)")
    ap.add_argument("--copy-runs", type=int, default=2)
    ap.add_argument("--copy-pscp-up-to", type=int, default=50, help="largest N of parallel-scp's copy rows (it compresses: ~4 min at 200)")
    ap.add_argument("--copy-on-disk", action="store_true", help="copy rows: the lab on /tmp's disk instead of a tmpfs")
    ap.add_argument("--only", default="", help="run only these parts: exec,wan,big,upgrade,copy (default: all)")
    ap.add_argument("--results-dir", default=os.path.join(ROOT, "bench", "results"), help="where the results files go (latest.md too)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    parts = {"exec", "wan", "big", "upgrade", "copy"}
    only = {x for x in args.only.split(",") if x}
    if only - parts:
        ap.error(f"--only: unknown part(s) {', '.join(sorted(only - parts))} (parts: {', '.join(sorted(parts))})")
    if only:
        args.sizes = args.sizes if "exec" in only else ""
        args.wan = args.wan if "wan" in only else ""
        args.big = args.big if "big" in only else 0
        args.upgrade_hosts = args.upgrade_hosts if "upgrade" in only else 0
        args.copy_sizes = args.copy_sizes if "copy" in only else ""
    ensure_tools()
    if not args.no_build:
        build()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    commands = [c for c in args.commands.split(",") if c]
    results = []
    started = datetime.datetime.now(datetime.timezone.utc)
    run_benchmark(sizes, commands, args.runs, args.default_kex_up_to, results)
    rtts = [int(x) for x in args.wan.split(",") if x]
    if rtts:
        run_wan(rtts, [int(x) for x in args.wan_sizes.split(",") if x], args.wan_runs, results)
    copy_sizes = [int(x) for x in args.copy_sizes.split(",") if x]
    if copy_sizes:
        run_copy(copy_sizes, args.copy_mb, args.copy_runs, results, on_disk=args.copy_on_disk, pscp_up_to=args.copy_pscp_up_to)
    if args.big:
        run_big(args.big, results)
    if args.upgrade_hosts:
        run_upgrade_benchmark(args.upgrade_hosts, results)
    elapsed_min = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    out_dir = args.results_dir
    os.makedirs(out_dir, exist_ok=True)
    stem = f"{started.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}"
    with open(os.path.join(out_dir, stem + ".jsonl"), "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    commit = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h"], capture_output=True, text=True).stdout.strip() or "unknown"
    parts = []
    if sizes:
        parts.append(f"Medians of {args.runs} counted runs per command after 1 warm-up per tool and lab (the curve25519 one also warms the tool's default-kex runs), tools interleaved; a run counts only when every host succeeded. "
                     f"OpenSSH's default key exchange runs with the first command, up to N = {args.default_kex_up_to}. ")
    if rtts:
        parts.append(f"WAN rows (through `fleet-lab`'s delaying proxy; RTT 0 is the same rows without it): medians of {args.wan_runs} runs per tool, no warm-up. ")
    if copy_sizes:
        parts.append(f"Copy rows: one {args.copy_mb} MB file of random bytes into every host's own directory (`fleet-lab up --private-dirs`, "
                     f"{'on the disk' if args.copy_on_disk else 'the lab on a tmpfs'}), `fleet copy --force` against parallel-scp (which always runs `scp -C`; up to N = {args.copy_pscp_up_to}), pdcp and clush --copy with curve25519; "
                     f"medians of {args.copy_runs} runs per tool after a warm-up round with a 1 MB file, tools interleaved; a run counts only when every host has the file with its size "
                     f"(and SHA-256, checked on {COPY_HASHED_HOSTS} hosts per run); sshd CPU is counted until the hosts' sessions are gone, past the tool's exit if need be. ")
    header = (f"# fleet benchmark, {started.strftime('%Y-%m-%d %H:%M UTC')}\n\n"
              f"Machine: {socket.gethostname()}, {CORES} cores ({cpu}), {platform.platform()}; {ssh}. fleet at commit {commit}"
              f"{'' if args.no_build else ' (built by this run)'}.\n"
              + "".join(parts)
              + f"The whole benchmark took {elapsed_min:.1f} min.\n"
              f"`floor` is the sshd side's CPU divided by the cores: no client can finish faster on this machine.\n")
    md = header + targets(results) + table(results) + "\n"
    with open(os.path.join(out_dir, stem + ".md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
