"""DataLoader worker counts fit the CPUs at hand."""

import os

from source.devices import usable_workers


def test_workers_are_capped_at_the_cpus_shared_by_the_node_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert [usable_workers(n) for n in (0, 1, 2, 4)] == [0, 1, 2, 2]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert [usable_workers(n) for n in (0, 1, 4)] == [0, 1, 1]
