#!/usr/bin/env python3
"""fleet's benchmark: `fleet exec` against pssh, pdsh and clush in one run, on a lab of real
sshd hosts started by `fleet-lab`, plus the controller cost of `fleet upgrade`.

    python3 bench/bench.py [--sizes 50,200,500] [--runs 3] [--commands true]
                           [--default-kex-up-to 200] [--big 1000] [--upgrade-hosts 50]
                           [--wan 20,100] [--wan-sizes 200,1000] [--wan-runs 2]

(`--commands true,'uname -a'` adds the second command's rows, `--wan 0,20,100` the
hand-tuned fleet rows on loopback; each adds about five minutes, past the 25 minutes
`make bench` keeps to.)

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

    def __init__(self, n, sites=0, rtt_ms=0):
        self.dir = tempfile.mkdtemp(prefix=f"fleet-bench-{n}-")
        cmd = [FLEET_LAB, "up", "--hosts", str(n), "--dir", self.dir]
        self.rtt_ms = rtt_ms
        if rtt_ms:
            cmd += ["--rtt", f"{rtt_ms}ms"]
        if sites:
            cmd += ["--sites-per-host", str(sites), "--civicrm", "5.69.0"]
        sh(cmd, stdout=subprocess.DEVNULL)
        self.n = n
        self.pids, self.addrs = [], []
        record_text = open(os.path.join(self.dir, "lab.toml")).read()
        head = record_text.split("[[host]]")[0]
        m = re.search(r"\[proxy\][^\[]*?pid = (\d+)", head, re.S)
        self.proxy_pid = int(m.group(1)) if m else None
        for block in record_text.split("[[host]]")[1:]:
            self.addrs.append(re.search(r'address = "([^"]+)"', block).group(1))
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

    def down(self):
        subprocess.run([FLEET_LAB, "down", "--dir", self.dir], stdout=subprocess.DEVNULL)
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


def measure(lab, argv, env, check):
    """Runs argv once: wall time, exit code, output, hosts ok, and from wait4 the CPU and peak
    RSS of the tool's process tree, plus the CPU the lab's sshd spent meanwhile."""
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
    return {
        "wall": wall,
        "rc": p.returncode,
        "err": err,
        "ok": check(out, err, p.returncode),
        "cpu": user + system,
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


def record(results, n, cmd, name, rnd, m, rtt_ms=0, wan=False):
    wall, cpu, sshd, ok, err = m["wall"], m["cpu"], m["sshd"], m["ok"], m["err"]
    results.append({
        "n": n, "command": cmd, "tool": name, "round": rnd, "warmup": rnd == 0, "rtt_ms": rtt_ms, "wan": wan,
        "wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "peak_rss_kib": m["rss"],
        "sshd_cpu_s": round(sshd, 4), "proxy_cpu_s": round(m.get("proxy", 0.0), 4),
        "hosts_ok": ok, "exit": m["rc"], "counted": rnd > 0 and ok == n,
    })
    log(f"{'RTT ' + str(rtt_ms) + 'ms ' if rtt_ms else ''}N={n} {cmd!r} {name:18} wall {wall:6.2f}s cpu {cpu:6.3f}s rss {m['rss'] / 1024:5.1f}MiB sshd {sshd:6.2f}s ok {ok}/{n}"
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
        if r.get("bench") or not r["counted"] or r.get("wan", False) != wan or r.get("rtt_ms", 0) != rtt:
            continue
        groups.setdefault((r["n"], r["command"]), {}).setdefault(r["tool"], []).append(r)
    keys = ("wall_s", "cpu_s", "peak_rss_kib", "sshd_cpu_s", "proxy_cpu_s")
    return {
        key: {t: {k: statistics.median(x.get(k, 0) for x in rs) for k in keys} | {"runs": len(rs)}
              for t, rs in by_tool.items()}
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
    for r in results:
        if not r.get("bench") and not r.get("wan") and r["n"] >= 1000 and r["tool"] == "fleet" and not r["warmup"]:
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
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
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
    if args.big:
        run_big(args.big, results)
    if args.upgrade_hosts:
        run_upgrade_benchmark(args.upgrade_hosts, results)
    elapsed_min = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    out_dir = os.path.join(ROOT, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    stem = f"{started.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}"
    with open(os.path.join(out_dir, stem + ".jsonl"), "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    header = (f"# fleet benchmark, {started.strftime('%Y-%m-%d %H:%M UTC')}\n\n"
              f"Machine: {socket.gethostname()}, {CORES} cores ({cpu}), {platform.platform()}; {ssh}.\n"
              f"Medians of {args.runs} counted runs per command after 1 warm-up per tool and lab (the curve25519 one also warms the tool's default-kex runs), tools interleaved; a run counts only when every host succeeded. "
              f"OpenSSH's default key exchange runs with the first command, up to N = {args.default_kex_up_to}. "
              f"WAN rows (through `fleet-lab`'s delaying proxy; RTT 0 is the same rows without it): medians of {args.wan_runs} runs per tool, no warm-up. "
              f"The whole benchmark took {elapsed_min:.1f} min.\n"
              f"`floor` is the sshd side's CPU divided by the cores: no client can finish faster on this machine.\n")
    md = header + targets(results) + table(results) + "\n"
    with open(os.path.join(out_dir, stem + ".md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "latest.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
