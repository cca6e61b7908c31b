"""The CPU meter: /proc accounting of the gateway's CPU, ours, and everybody else's ("foreign") over a window."""

from __future__ import annotations

import os
import time
from typing import Any

TCK = os.sysconf("SC_CLK_TCK")


def proc_snapshot() -> dict[int, tuple[int, int, int, int, str]]:
    """pid -> (ppid, own ticks, reaped children's ticks, start time, comm) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                s = f.read().decode(errors="replace")
        except OSError:
            continue
        r = s.rindex(")")
        comm = s[s.index("(") + 1 : r]
        v = s[r + 2 :].split()
        out[int(d)] = (int(v[1]), int(v[11]) + int(v[12]), int(v[13]) + int(v[14]), int(v[19]), comm)
    return out


def tree(snap: dict[int, tuple[int, int, int, int, str]], roots: list[int]) -> set[int]:
    """The roots that exist in ``snap`` and all their descendants."""
    kids: dict[int, list[int]] = {}
    for pid, row in snap.items():
        kids.setdefault(row[0], []).append(pid)
    seen: set[int] = set()
    stack = [r for r in roots if r in snap]
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(kids.get(p, []))
    return seen


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return int(v[11]) + int(v[12])
    except OSError:
        return 0


def descendants(pid: int) -> list[int]:
    """The live children of ``pid``, theirs, and so on (``/proc/PID/task/*/children``; Linux 3.5+)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            stack.extend(kids)
    return out


def tree_cpu_ticks(*roots: int) -> int:
    """utime + stime of the ``roots`` and their live descendants (each process once), plus what the roots' children
    that ended used (cutime + cstime): a gateway's supervisor and its workers, a worker that died and was replaced
    included. One process without children: its own."""
    pids: set[int] = set()
    ended = 0
    for root in roots:
        try:
            with open(f"/proc/{root}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ended += int(v[13]) + int(v[14])
        pids.add(root)
        pids.update(descendants(root))
    return ended + sum(cpu_ticks(p) for p in pids)


def per_cpu_busy() -> dict[str, int]:
    """Busy ticks (all but idle and iowait) of the machine ("cpu") and of each CPU ("cpu0", ...), from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]
            out[name] = sum(v) - v[3] - v[4]
    return out


def status_numbers(pid: int, names: tuple[str, ...]) -> dict[str, int]:
    """The first number of each of the ``names`` lines of ``/proc/PID/status`` (empty if the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in names:
                    out[name] = int(rest.split()[0])
    except OSError:
        pass
    return out


def mem_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in kB (empty if it is gone)."""
    return status_numbers(pid, ("VmRSS", "VmHWM"))


def tree_mem_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM summed over ``pid`` and its live descendants (a supervisor and its workers)."""
    out: dict[str, int] = {}
    for p in [pid, *descendants(pid)]:
        for k, v in mem_kb(p).items():
            out[k] = out.get(k, 0) + v
    return out


def wakeups(pid: int) -> int:
    """How many times ``pid``'s threads went to sleep waiting for something (voluntary context switches): an event
    loop's wake-ups."""
    return status_numbers(pid, ("voluntary_ctxt_switches",)).get("voluntary_ctxt_switches", 0)


def tree_wakeups(pid: int) -> int:
    """:func:`wakeups` summed over ``pid`` and its live descendants."""
    return sum(wakeups(p) for p in [pid, *descendants(pid)])


class CpuWindow:
    """CPU used between ``start()`` and ``stop()``: by the gateway (its process tree: with several workers, the
    supervisor and every worker), by us (this script, the load generators it has reaped, the upstream), and by
    everything else ("foreign" = machine busy time from /proc/stat minus ours, so short-lived processes of other jobs
    count too). ``gw_core_other_cores`` is what ran on the gateway's CPUs besides the gateway: the interference that
    matters most. ``gw_wakeups``: the gateway's voluntary context switches, its processes' wake-ups (a process that
    ended within the window is not counted). The top foreign processes are named for the log."""

    def __init__(self, gw_pid: int | None, ours: list[int], gw_cpus: set[int]) -> None:
        self.gw_pid = gw_pid
        self.ours = ours
        self.gw_cpus = gw_cpus

    def _ours_ticks(self) -> int:
        t = os.times()  # this process + its reaped children (wrk, the _load generator)
        me = round((t.user + t.system + t.children_user + t.children_system) * TCK)
        return me + tree_cpu_ticks(*self.ours)

    def start(self) -> None:
        self.t0 = time.monotonic()
        with open("/proc/uptime") as f:
            self.t0_ticks = float(f.read().split()[0]) * TCK
        self.snap0 = proc_snapshot()
        self.gw0 = tree_cpu_ticks(self.gw_pid) if self.gw_pid else 0
        self.gw_wakeups0 = tree_wakeups(self.gw_pid) if self.gw_pid else 0
        self.ours0 = self._ours_ticks()
        self.busy0 = per_cpu_busy()

    def stop(self) -> dict[str, Any]:
        busy1 = per_cpu_busy()
        ours1 = self._ours_ticks()
        gw = (tree_cpu_ticks(self.gw_pid) - self.gw0) if self.gw_pid else 0
        gw_wakeups = (tree_wakeups(self.gw_pid) - self.gw_wakeups0) if self.gw_pid else 0
        el = max(time.monotonic() - self.t0, 1e-3)
        snap1 = proc_snapshot()
        busy = {k: busy1[k] - self.busy0.get(k, 0) for k in busy1}
        foreign = max(0, busy["cpu"] - (ours1 - self.ours0))
        gw_core = sum(busy.get(f"cpu{c}", 0) for c in self.gw_cpus)
        # names only: own CPU of the foreign processes alive at the end (processes that came and went are in the
        # total but not named)
        mine = tree(snap1, [*self.ours, os.getpid()]) | tree(snap1, [2])
        per: dict[str, int] = {}
        for pid, (_, cpu, _c, started, comm) in snap1.items():
            before = self.snap0.get(pid)
            base = before[1] if before is not None and before[3] == started else 0
            if pid in mine or cpu <= base or (before is None and started < self.t0_ticks):
                continue
            per[comm] = per.get(comm, 0) + cpu - base
        top = sorted(per.items(), key=lambda kv: -kv[1])[:3]
        return {
            "seconds": round(el, 3),
            "gw_cpu_s": round(gw / TCK, 3),
            "gw_cpu_cores": round(gw / TCK / el, 3),
            "gw_wakeups": gw_wakeups,
            "foreign_cores": round(foreign / TCK / el, 3),
            "gw_core_other_cores": round(max(0, gw_core - gw) / TCK / el, 3) if self.gw_cpus else None,
            "foreign_top": {k: round(v / TCK / el, 3) for k, v in top},
            "machine_busy_cores": round(busy["cpu"] / TCK / el, 3),
            "cpu_busy_cores": {k: round(v / TCK / el, 3) for k, v in busy.items() if k != "cpu"},
        }
