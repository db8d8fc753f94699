import pytest
import torch

from source.io import UnsafePathError, atomic_path, atomic_torch_save, safe_join


def test_safe_join_keeps_names_inside(tmp_path):
    assert safe_join(tmp_path, "TCGA-A1.01", ".pt") == tmp_path / "TCGA-A1.01.pt"
    for name in ["..", ".", "", "../x", "a/b", "/etc/passwd", "a\\b", "a\x00b"]:
        with pytest.raises(UnsafePathError):
            safe_join(tmp_path, name)


def test_atomic_path_leaves_nothing_when_the_write_fails(tmp_path):
    target = tmp_path / "out.pt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    atomic_torch_save(torch.ones(2), target)
    assert torch.equal(torch.load(target, weights_only=True), torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os

    previous = os.umask(0o022)
    try:
        atomic_torch_save(torch.ones(1), tmp_path / "a.pt")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644


def test_json_is_strict_and_says_which_values_were_not_finite(tmp_path):
    import json

    from source.io import atomic_write_json

    replaced = atomic_write_json(
        tmp_path / "m.json", {"test": {"loss": float("nan"), "auc": 0.5, "curve": [1.0, float("inf")]}}
    )
    assert replaced == ["test.loss", "test.curve[1]"]
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c))) == {
        "test": {"loss": None, "auc": 0.5, "curve": [1.0, None]}
    }
