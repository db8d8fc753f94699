"""Shared test helpers: an independent eager ViT, official-format checkpoints, config building."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from source.config.core import compose_base
from source.config.extraction import ExtractionConfig

REPO = Path(__file__).resolve().parents[1]
TEST_DEVICE = os.environ.get("HIPT_TEST_DEVICE", "cpu")
"""Where the job tests (training, pretraining, heatmaps, timm encoders) run: ``cpu`` in ``make test``,
``cuda`` when the GPU check runs them (``HIPT_TEST_DEVICE=cuda``). Multi-process gloo tests stay on the CPU."""


def reference_blocks(
    state: Mapping[str, torch.Tensor], tokens: torch.Tensor, heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch pre-norm blocks + final norm from a state dict (explicit softmax attention)."""
    dim = tokens.shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    weights = None
    for i in range(depth):
        p = functools.partial(lambda block, name: state[f"blocks.{block}.{name}"], i)
        h = F.layer_norm(tokens, (dim,), p("norm1.weight"), p("norm1.bias"), 1e-6)
        qkv = h @ p("attn.qkv.weight").T + p("attn.qkv.bias")
        b, n, _ = qkv.shape
        q, k, v = qkv.reshape(b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim // heads), dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(b, n, dim)
        tokens = tokens + attended @ p("attn.proj.weight").T + p("attn.proj.bias")
        h = F.layer_norm(tokens, (dim,), p("norm2.weight"), p("norm2.bias"), 1e-6)
        hidden = F.gelu(h @ p("mlp.fc1.weight").T + p("mlp.fc1.bias"))
        tokens = tokens + hidden @ p("mlp.fc2.weight").T + p("mlp.fc2.bias")
    return F.layer_norm(tokens, (dim,), state["norm.weight"], state["norm.bias"], 1e-6), weights


def reference_pos_embed(pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINO's recipe: bicubic with scale factor ((g + 0.1) / g0), CLS position untouched."""
    g0 = int(math.sqrt(pos_embed.shape[1] - 1))
    if height == width == g0:
        return pos_embed
    grid = pos_embed[:, 1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((height + 0.1) / g0, (width + 0.1) / g0), mode="bicubic")
    return torch.cat((pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, height * width, -1)), dim=1)


def reference_vit_patch(
    state: Mapping[str, torch.Tensor], images: torch.Tensor, heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CLS ``(B, D)`` and last attention of a pixel ViT, computed from its state dict alone."""
    tokens = F.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    height, width = tokens.shape[-2:]
    tokens = tokens.flatten(2).transpose(1, 2)
    tokens = torch.cat((state["cls_token"].expand(len(tokens), -1, -1), tokens), dim=1)
    tokens = tokens + reference_pos_embed(state["pos_embed"], height, width)
    out, weights = reference_blocks(state, tokens, heads)
    return out[:, 0], weights


def reference_vit_region(
    state: Mapping[str, torch.Tensor], grid: torch.Tensor, heads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CLS ``(B, D)`` and last attention of ViT4K from a feature grid ``(B, C, h, w)``."""
    height, width = grid.shape[-2:]
    tokens = grid.flatten(2).transpose(1, 2)
    tokens = F.gelu(tokens @ state["phi.0.weight"].T + state["phi.0.bias"])
    tokens = torch.cat((state["cls_token"].expand(len(tokens), -1, -1), tokens), dim=1)
    tokens = tokens + reference_pos_embed(state["pos_embed"], height, width)
    out, weights = reference_blocks(state, tokens, heads)
    return out[:, 0], weights


def double_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict in float64 (a more exact reference)."""
    return {k: v.detach().double() for k, v in model.state_dict().items()}


def official_checkpoint(model: torch.nn.Module, head_dim: int = 32, seed: int = 0) -> dict:
    """A training dict laid out like HIPT's released DINO files (teacher + DDP-wrapped student + heads)."""
    generator = torch.Generator().manual_seed(seed)
    backbone = model.state_dict()
    dim = backbone["cls_token"].shape[-1]
    head = {
        "head.mlp.0.weight": torch.randn(64, dim, generator=generator),
        "head.mlp.0.bias": torch.zeros(64),
        "head.mlp.2.weight": torch.randn(head_dim, 64, generator=generator),
        "head.last_layer.weight_g": torch.ones(128, 1),
        "head.last_layer.weight_v": torch.randn(128, head_dim, generator=generator),
    }
    teacher = {f"backbone.{k}": v.clone() for k, v in backbone.items()} | head
    student = {f"module.backbone.{k}": v + 0.5 for k, v in backbone.items()} | {
        f"module.{k}": v for k, v in head.items()
    }
    parameter = torch.nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.AdamW([parameter])
    parameter.grad = torch.ones(4)
    optimizer.step()
    args = argparse.Namespace(
        arch="vit_small",
        patch_size=16,
        out_dim=128,
        norm_last_layer=False,
        lr=0.0005,
        local_crops_scale=(0.05, 0.4),
        global_crops_scale=(0.4, 1.0),
        data_path="/data/patches",
        use_fp16=True,
        optimizer="adamw",
        epochs=100,
        dist_url="env://",
    )
    return {
        "student": student,
        "teacher": teacher,
        "optimizer": optimizer.state_dict(),
        "epoch": 100,
        "args": args,
        "dino_loss": {"center": torch.zeros(1, 128)},
        "fp16_scaler": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 7,
        },
    }


def extraction_config(**overrides) -> DictConfig:
    """The documented extraction defaults (config/default.yaml) with ``overrides`` (dotted keys allowed)."""
    cfg = compose_base(ExtractionConfig, REPO / "config" / "default.yaml")
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def training_config(kind: str, multi: bool = False, **overrides) -> DictConfig:
    """``config/training/<kind>/{single,multi}.yaml`` on its schema, with dotted ``overrides``."""
    from source.tasks.registry import TRAINING_SCHEMAS

    schema = TRAINING_SCHEMAS[kind]
    documented = load_documented(REPO / "config" / "training" / kind / ("multi.yaml" if multi else "single.yaml"))
    cfg = OmegaConf.merge(OmegaConf.structured(schema), documented)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def defaults_file(path: Path, entry) -> Optional[Path]:
    """The YAML file of one ``defaults`` entry of ``path``: a sibling file, the training base or a ``task`` group file
    (registered in code from ``config/training``); None for a schema."""
    from source.config.training import TASK_GROUP, TRAINING_BASE

    training = REPO / "config" / "training"
    if entry == TRAINING_BASE:
        return training / "base.yaml"
    if isinstance(entry, Mapping) and set(entry) == {TASK_GROUP}:
        return training / TASK_GROUP / f"{entry[TASK_GROUP]}.yaml"
    sibling = path.with_name(f"{entry}.yaml") if isinstance(entry, str) else None
    return sibling if sibling is not None and sibling.is_file() else None


def load_documented(path: Path) -> DictConfig:
    """A documented YAML with the files of its ``defaults`` list merged under it in order, as Hydra composes them
    (schema entries of the list, registered in code, are left out)."""
    documented = OmegaConf.load(path)
    entries = OmegaConf.to_container(documented.pop("defaults", OmegaConf.create([])))
    files = [defaults_file(path, entry) for entry in entries if entry != "_self_"]
    composed = [load_documented(file) for file in files if file is not None]
    return OmegaConf.merge(*composed, documented) if composed else documented


def pretraining_config(stage: str, **overrides) -> DictConfig:
    """``config/pretraining/<stage>.yaml`` on its schema, with dotted ``overrides``."""
    from source.config.pretraining import PRETRAINING_SCHEMAS

    documented = OmegaConf.load(REPO / "config" / "pretraining" / f"{stage}.yaml")
    documented.pop("defaults")
    cfg = OmegaConf.merge(OmegaConf.structured(PRETRAINING_SCHEMAS[stage]), documented)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def schema_keys(schema: type, prefix: str = "") -> set[str]:
    """Dotted leaf keys of a dataclass schema."""
    keys = set()
    for field in dataclasses.fields(schema):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default):
            keys |= schema_keys(type(default), f"{prefix}{field.name}.")
        else:
            keys.add(f"{prefix}{field.name}")
    return keys


def yaml_keys(node: dict, prefix: str = "") -> set[str]:
    """Dotted leaf keys of a loaded YAML (mapping-valued keys such as label_mapping are leaves)."""
    keys = set()
    for key, value in node.items():
        if isinstance(value, dict) and key not in {"label_mapping", "test_csvs"}:
            keys |= yaml_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def assert_documented(path: Path, schema: type) -> None:
    """The YAML at ``path`` (with the files it composes) has exactly the schema's keys, a comment on every value line
    of its own, and merges on the schema."""

    own = OmegaConf.load(path)
    own.pop("defaults")
    assert yaml_keys(OmegaConf.to_container(own)) <= schema_keys(schema)
    documented = load_documented(path)
    assert yaml_keys(OmegaConf.to_container(documented)) == schema_keys(schema)
    assert_commented(path)
    OmegaConf.merge(OmegaConf.structured(schema), documented)


def assert_commented(path: Path) -> None:
    """Every line of ``path`` that gives a key a value carries a comment."""
    import re

    for line in path.read_text().splitlines():
        if re.match(r"^\s*[a-z_]+:\s*\S", line):
            assert "#" in line, f"{path.name}: '{line.strip()}' has no comment"


def extraction_command(*args: str) -> list[str]:
    """``python extract_features.py --config-name default *args``."""
    import sys

    return [sys.executable, str(REPO / "extract_features.py"), "--config-name", "default", *args]


def subprocess_environment() -> dict[str, str]:
    """The environment of a test's subprocess: one thread, the repository importable (ahead of any
    ``PYTHONPATH`` already set, which is kept)."""
    path = os.pathsep.join(part for part in (str(REPO), os.environ.get("PYTHONPATH", "")) if part)
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def compare_runs(first: Path, second: Path) -> None:
    """Two extraction runs wrote the same slide features and the same tables (run folders aside)."""
    import pandas as pd

    names = sorted(p.name for p in (first / "features" / "slide").iterdir())
    assert names == sorted(p.name for p in (second / "features" / "slide").iterdir())
    assert not any(name.startswith(".") for name in names)
    for name in names:
        torch.testing.assert_close(
            torch.load(first / "features" / "slide" / name, weights_only=True),
            torch.load(second / "features" / "slide" / name, weights_only=True),
            atol=1e-5,
            rtol=1e-5,
        )
    for table in ("slides.csv", "regions.csv"):
        a = pd.read_csv(first / table).replace(str(first), "", regex=True)
        b = pd.read_csv(second / table).replace(str(second), "", regex=True)
        pd.testing.assert_frame_equal(a, b)


def assert_killed_run_resumes(base: list[str], tmp_path: Path, slides: int) -> None:
    """Kill ``extract_features.py *base`` once its first slide is written; resuming gives the full run's files."""
    import signal
    import subprocess
    import time

    env = subprocess_environment()
    reference = subprocess.run(
        extraction_command(*base, f"output_dir={tmp_path / 'a'}", "run_id=full"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = tmp_path / "b" / "feature_extraction" / "killed"
    command = extraction_command(*base, f"output_dir={tmp_path / 'b'}", "run_id=killed")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed / "features" / "slide").glob("*.pt")):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = list((killed / "features" / "slide").glob("*.pt"))
    assert 1 <= len(finished) < slides, "the run was not killed part-way"
    assert not (killed / "slides.csv").exists()
    resumed = subprocess.run([*command, "resume=true"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(finished)} slide(s) already done" in resumed.stderr
    compare_runs(tmp_path / "a" / "feature_extraction" / "full", killed)


def slides_written_per_log(run_dir: Path) -> dict[str, list[str]]:
    """Slide id -> the logs (``log.txt`` = rank 0, ``log.rank1.txt``) that report writing its features."""
    writes: dict[str, list[str]] = {}
    for log in ("log.txt", "log.rank1.txt"):
        for line in (run_dir / log).read_text().splitlines():
            if " regions -> " in line:
                writes.setdefault(line.split("slide ", 1)[1].split(":", 1)[0], []).append(log)
    return writes


def run_two_process_extraction(tmp_path: Path, *args: str) -> Path:
    """Run ``extract_features.py *args`` under torchrun with 2 CPU processes (gloo); returns its run folder."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *extraction_command(*args)[1:],
    ]
    command += [f"output_dir={tmp_path}", "run_id=ddp", "device=cpu", "num_workers=0"]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_environment(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "feature_extraction" / "ddp"


def run_on_two_c10d_nodes(script_and_args: list[str], cwd: Optional[Path] = None) -> list[str]:
    """Run ``python3 <script> <args>`` as two torchrun "nodes" of one process each on localhost, joined by the
    c10d rendezvous (as a Slurm job of two nodes would be); returns both outputs after asserting both succeeded."""
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = []
    for node in range(2):
        rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=hipt-test"]
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", *rendezvous]
        command += [f"--node-rank={node}", *script_and_args]
        nodes.append(
            subprocess.Popen(
                command,
                env=subprocess_environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=cwd,
            )
        )
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    return outputs
