import logging
import os
import pickle

import pytest
import torch
from safetensors import safe_open

from source.models.checkpoints import CheckpointError, load_pretrained, read_checkpoint
from source.models.convert import convert_to_safetensors
from source.models.convert import main as convert_main
from source.models.factory import build_hipt_encoder, build_slide_model, build_vit_patch, build_vit_region
from source.models.hipt import HIPTEncoder
from source.models.settings import EncoderSettings, HiptOptions, SlideModelSettings
from source.models.vit import build_vit, resize_pos_embed, vit4k_xs, vit_small
from tests.helpers import official_checkpoint


@pytest.fixture(scope="module")
def trained_patch():
    torch.manual_seed(11)
    return vit_small().eval()


@pytest.fixture(scope="module")
def official_file(trained_patch, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "vit256_small_dino.pth"
    torch.save(official_checkpoint(trained_patch), path)
    return path


def assert_same_weights(a, b):
    for (name, x), (_, y) in zip(sorted(a.state_dict().items()), sorted(b.state_dict().items()), strict=True):
        assert torch.equal(x, y), name


def test_official_training_dict_loads_teacher_by_name(trained_patch, official_file, caplog):
    model = build_vit("vit_small")
    with caplog.at_level(logging.INFO):
        report = load_pretrained(model, official_file, name="vit_patch")
    assert_same_weights(model, trained_patch)
    assert report.entry == "teacher" and report.loaded == len(trained_patch.state_dict()) == 150
    assert report.ignored_head == 5 and report.unexpected == []
    assert {"student", "optimizer", "args", "epoch", "dino_loss"} <= set(report.ignored_entries)
    lines = [r.getMessage() for r in caplog.records if "loaded 150 tensors" in r.getMessage()]
    assert len(lines) == 1 and "ignored 5 DINO-head tensors" in lines[0]


def test_student_entry_strips_module_and_backbone_prefixes(trained_patch, official_file):
    model = build_vit("vit_small")
    load_pretrained(model, official_file, entry="student")
    torch.testing.assert_close(model.cls_token, trained_patch.cls_token + 0.5)


def test_bare_state_dict_and_safetensors_round_trip_give_identical_features(trained_patch, official_file, tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save(trained_patch.state_dict(), bare)
    converted = tmp_path / "vit256_small_dino.safetensors"
    assert convert_to_safetensors(official_file, converted) == 150
    with safe_open(str(converted), "pt") as handle:
        assert not any(key.startswith(("head.", "backbone.", "module.")) for key in handle.keys())
        assert handle.metadata()["entry"] == "teacher"
    assert converted.stat().st_size < 0.6 * official_file.stat().st_size
    regions = torch.randint(0, 256, (1, 3, 512, 512), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    features = []
    for path in (official_file, bare, converted):
        encoder = HIPTEncoder(build_vit_patch(EncoderSettings(patch_weights=path)).eval())
        with torch.inference_mode():
            features.append(encoder.encode_patches(regions))
    assert torch.equal(features[0], features[1]) and torch.equal(features[0], features[2])


def test_converter_command_line(official_file, tmp_path, capsys):
    assert convert_main([str(official_file), str(tmp_path / "out.safetensors")]) == 0
    assert (tmp_path / "out.safetensors").exists()
    assert convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "x.safetensors")]) == 1


def test_vit_region_checkpoint_with_other_pos_grid_is_adopted_or_interpolated(tmp_path):
    torch.manual_seed(2)
    pretrained_on_16 = vit4k_xs(pos_grid=16)
    path = tmp_path / "vit4k_16.pth"
    torch.save(official_checkpoint(pretrained_on_16), path)
    adopted = build_vit_region(
        EncoderSettings(region_weights=path)
    )  # img_size_pretrained unset: the checkpoint's grid is used as is
    assert adopted.pos_grid == 16
    torch.testing.assert_close(adopted.pos_embed, pretrained_on_16.pos_embed)
    grid = torch.randn(1, 384, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(adopted(grid), pretrained_on_16.eval()(grid))
    resized = build_vit_region(
        EncoderSettings(region_weights=path, img_size_pretrained=224)
    )  # an explicit 14 x 14 model: resized once
    torch.testing.assert_close(resized.pos_embed, resize_pos_embed(pretrained_on_16.pos_embed.detach(), 14))
    official = build_vit_region(EncoderSettings(region_weights=path, img_size_pretrained=256))
    torch.testing.assert_close(official.pos_embed, pretrained_on_16.pos_embed)


def test_snapshot_normalisation_mismatch_is_warned(tmp_path, caplog):
    torch.manual_seed(3)
    snapshot = official_checkpoint(build_vit("vit_tiny")) | {
        "config": {"aug": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    }
    torch.save(snapshot, tmp_path / "snapshot.pt")
    with caplog.at_level(logging.WARNING):
        build_hipt_encoder(EncoderSettings("local", patch_arch="vit_tiny", patch_weights=tmp_path / "snapshot.pt"))
    assert any("pretrained with mean [0.485, 0.456, 0.406]" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_hipt_encoder(
            EncoderSettings(
                "local",
                patch_arch="vit_tiny",
                patch_weights=tmp_path / "snapshot.pt",
                mean=(0.485, 0.456, 0.406),
                std=(0.229, 0.224, 0.225),
            )
        )
    assert not any("pretrained with mean" in r.getMessage() for r in caplog.records)


def test_random_init_only_when_asked_and_warned(caplog):
    with caplog.at_level(logging.WARNING):
        build_vit_patch(EncoderSettings(patch_arch="vit_tiny"))
    assert any("RANDOM weights" in r.getMessage() and "pretrain_vit_patch" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 704000000\n", "git-LFS pointer"),
        (b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>", "HTML page"),
        (b"", "empty"),
        (b"\x00\x01garbage that is not a checkpoint at all", "neither"),
    ],
)
def test_bad_files_are_named_errors(tmp_path, content, message):
    path = tmp_path / "vit256_small_dino.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as error:
        load_pretrained(build_vit("vit_tiny"), path)
    assert str(path) in str(error.value)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*README.*set pretrain_vit_patch=null"):
        build_vit_patch(EncoderSettings(patch_weights=tmp_path / "nope.pth"))


HEATMAP_KEY_NAMES = {"patch_weights_key": "patch_weights", "region_weights_key": "region_weights"}


def test_messages_name_the_key_of_the_entry_point(tmp_path, caplog):
    """Heatmaps, training and pretraining name their own keys, not extraction's."""
    with caplog.at_level(logging.WARNING):
        build_hipt_encoder(EncoderSettings(patch_arch="vit_tiny", **HEATMAP_KEY_NAMES))
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert (
        "patch_weights is null" in warnings and "region_weights is null" in warnings and "pretrain_vit" not in warnings
    )
    with pytest.raises(CheckpointError, match="set region_weights=null"):
        build_hipt_encoder(
            EncoderSettings(patch_arch="vit_tiny", region_weights=tmp_path / "no.pth", **HEATMAP_KEY_NAMES)
        )
    with pytest.raises(CheckpointError, match="set model.pretrain_vit_region=null"):
        vit_region = EncoderSettings(region_weights=tmp_path / "no.pth", region_weights_key="model.pretrain_vit_region")
        build_slide_model(SlideModelSettings(level="local", options=HiptOptions(vit_region=vit_region)), 2)
    with pytest.raises(CheckpointError, match="set model.pretrained_weights=null"):
        load_pretrained(build_vit("vit_tiny"), tmp_path / "no.pth", key="model.pretrained_weights")


@pytest.mark.parametrize("name", ["vit.pth", "vit.safetensors"])
def test_truncated_files_are_named_errors(trained_patch, official_file, tmp_path, name):
    source = tmp_path / f"full_{name}"
    if name.endswith(".safetensors"):
        convert_to_safetensors(official_file, source)
    else:
        source.write_bytes(official_file.read_bytes())
    truncated = tmp_path / name
    truncated.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupt") as error:
        load_pretrained(build_vit("vit_small"), truncated)
    assert str(truncated) in str(error.value)


def test_missing_and_misshaped_tensors_are_named(trained_patch, tmp_path):
    state = dict(trained_patch.state_dict())
    del state["blocks.3.attn.proj.weight"]
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="blocks.3.attn.proj.weight"):
        load_pretrained(build_vit("vit_small"), path)
    full = tmp_path / "full.pth"
    torch.save(trained_patch.state_dict(), full)
    with pytest.raises(
        CheckpointError, match=r"wrong shapes: .*patch_embed.proj.weight \(checkpoint \(384, 3, 16, 16\)"
    ):
        load_pretrained(build_vit("vit_tiny"), full)


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with path.open("wb") as handle:
        pickle.dump({"teacher": Exploit()}, handle)
    with pytest.raises(CheckpointError, match="not allowed for safe loading"):
        read_checkpoint(path)
    torch.save({"teacher": {"x": torch.zeros(1)}, "payload": Exploit()}, tmp_path / "evil_zip.pth")
    with pytest.raises(CheckpointError, match="not allowed for safe loading"):
        read_checkpoint(tmp_path / "evil_zip.pth")
    assert not marker.exists()


def test_wrong_entry_lists_available_entries(official_file):
    with pytest.raises(CheckpointError, match="no 'ema' state dict.*'student'"):
        load_pretrained(build_vit("vit_small"), official_file, entry="ema")


def test_filter_checkpoint_is_pure_and_maps_keys_onto_the_model():
    from source.models.checkpoints import filter_checkpoint

    model = vit_small()
    expected = {k: v.shape for k, v in model.state_dict().items()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    backbone = dict(model.state_dict())
    backbone["pos_embed"] = resize_pos_embed(backbone["pos_embed"], 8)  # a 8 x 8 grid against the model's 14 x 14
    backbone["extra.weight"] = torch.zeros(2)
    del backbone["norm.bias"]
    backbone["norm.weight"] = torch.ones(5)
    fitted = filter_checkpoint(backbone, expected)
    assert fitted.resized == (64, 196) and fitted.state["pos_embed"].shape == expected["pos_embed"]
    assert fitted.missing == ["norm.bias"] and fitted.unexpected == ["extra.weight"]
    assert fitted.misshaped == ["norm.weight (checkpoint (5,), model (384,))"]
    assert set(fitted.state) == set(expected) - {"norm.bias", "norm.weight"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "no model is touched"
