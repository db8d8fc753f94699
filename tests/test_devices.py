"""DataLoader worker counts fit the CPUs at hand."""

import os

from source.devices import usable_workers


def test_workers_are_capped_at_the_cpus_shared_by_the_node_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert [usable_workers(n) for n in (0, 1, 2, 4)] == [0, 1, 2, 2]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert [usable_workers(n) for n in (0, 1, 4)] == [0, 1, 1]


def test_rng_state_round_trips_and_reads_the_old_format():
    import torch

    from source.devices import rng_state, set_rng_state

    state = rng_state()
    first = torch.rand(3)
    set_rng_state(state)
    assert torch.equal(torch.rand(3), first)
    set_rng_state(state["cpu"])  # a checkpoint of an earlier version holds the bare CPU state
    assert torch.equal(torch.rand(3), first)


def test_cuda_states_are_saved_and_restored_when_cuda_is_used(monkeypatch):
    import torch

    from source.devices import rng_state, set_rng_state

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([1]), torch.tensor([2])])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(states))
    state = rng_state()
    assert [int(t) for t in state["cuda"]] == [1, 2]
    set_rng_state(state)
    assert [int(t) for t in restored[0]] == [1, 2]


def test_asking_the_tests_for_cuda_without_a_gpu_is_a_usage_error():
    import subprocess
    import sys

    from tests.helpers import REPO, subprocess_environment

    environment = subprocess_environment() | {"HIPT_TEST_DEVICE": "cuda", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_devices.py")]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO)
    assert result.returncode == 4  # pytest's usage-error exit code: nothing ran
    assert "HIPT_TEST_DEVICE=cuda but no CUDA GPU is visible" in result.stdout + result.stderr
