"""natpass.lab.netns: namespaces, veth, processes, and cleanup that works after a crash."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from natpass.lab.netns import LabError, Netns, check_lab_address, pid_alive

PREFIX = "nplab"


@pytest.fixture
def lab(root: None) -> Iterator[Netns]:
    n = Netns(PREFIX)
    with n.session():
        yield n


def test_addresses_outside_documentation_ranges_are_refused() -> None:
    for bad in ("8.8.8.8/32", "10.0.0.1/8", "172.16.0.1/24", "1.1.1.0/24"):
        with pytest.raises(LabError):
            check_lab_address(bad)
    for good in ("192.0.2.1/24", "198.51.100.10/24", "203.0.113.0/24", "100.64.0.1/10", "192.168.1.1/24"):
        check_lab_address(good)


def test_bad_prefix_is_refused() -> None:
    for bad in ("", "NP", "np-x", "9np", "averyverylongprefix"):
        with pytest.raises(LabError):
            Netns(bad)


def test_veth_between_two_namespaces_carries_ping(lab: Netns) -> None:
    lab.add("a")
    lab.add("b")
    lab.veth("a", "eth0", "b", "eth0")
    lab.addr("a", "eth0", "192.0.2.1/24")
    lab.addr("b", "eth0", "192.0.2.2/24")
    out = lab.run("a", ["ping", "-c1", "-W2", "192.0.2.2"], check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert lab.namespaces() == [f"{PREFIX}-a", f"{PREFIX}-b"]


def test_nothing_is_created_in_the_root_namespace(lab: Netns) -> None:
    before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    lab.add("a")
    lab.add("b")
    lab.veth("a", "npx0", "b", "npx1")
    after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "npx0" not in after and "npx1" not in after
    assert len(after.splitlines()) == len(before.splitlines())


def test_spawned_process_runs_inside_the_namespace_and_stops_by_pid(lab: Netns) -> None:
    lab.add("a")
    pid = lab.spawn("a", ["sleep", "60"], label="sleeper")
    assert lab.alive(pid)
    ns_pids = subprocess.run(["ip", "netns", "pids", lab.ns("a")], capture_output=True, text=True).stdout.split()
    assert str(pid) in ns_pids
    lab.kill(pid)
    assert not lab.alive(pid)
    assert lab.recorded() == []


def test_cleanup_after_a_crash_finds_recorded_pids_and_stale_namespaces(root: None) -> None:
    first = Netns(PREFIX)
    first.cleanup()
    try:
        first.add("a")
        first.add("b")
        pid = first.spawn("a", ["sleep", "60"], label="orphan")
        rec = first.recorded()
        assert [r.pid for r in rec] == [pid]
        # A new process with no memory of the first one (as after a crash) removes everything.
        second = Netns(PREFIX)
        removed = second.cleanup()
        assert f"netns {PREFIX}-a" in removed
        assert not pid_alive(pid, rec[0].start)
        assert second.namespaces() == []
        assert not second.state_dir.exists()
    finally:
        first.cleanup()


def test_private_run_gives_each_process_its_own_run_but_keeps_the_state_dir(lab: Netns) -> None:
    lab.add("a")
    marker = lab.write("marker.txt", "visible")
    pid = lab.spawn(
        "a",
        ["sh", "-c", f"ls /run > {lab.state_dir}/run-listing; cat {marker}; sleep 30"],
        label="privrun",
        private_run=True,
    )
    assert lab.wait_for(lambda: "visible" in lab.log("privrun"), 5), lab.log("privrun")
    listing = (lab.state_dir / "run-listing").read_text().split()
    assert "netns" not in listing  # the root namespace's /run is hidden from this process
    assert Path("/run/netns").is_dir()  # and untouched for everyone else
    lab.kill(pid)


def test_prefix_np_does_not_match_other_prefixes(root: None) -> None:
    other = Netns("nplabx")
    mine = Netns(PREFIX)
    other.cleanup()
    mine.cleanup()
    try:
        other.add("a")
        mine.cleanup()
        assert other.namespaces() == ["nplabx-a"]
    finally:
        other.cleanup()
