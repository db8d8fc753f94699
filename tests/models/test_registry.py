"""Every registered encoder: forward, backward and a state-dict round trip (as timm's model tests do)."""

import pytest
import torch

from source.config.checks import check_architectures
from source.errors import ConfigError
from source.models.registry import ENCODERS, TIMM_BUILDER, EncoderKind, build_encoder, encoder_names, encoder_spec


def sample_input(kind: EncoderKind) -> torch.Tensor:
    """A small input of the right kind: 2 images of 32 px (2 x 2 tokens) or 2 grids of 4 x 4 features."""
    torch.manual_seed(0)
    return torch.randn(2, 3, 32, 32) if kind == EncoderKind.pixels else torch.randn(2, 384, 4, 4)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_forward_backward_and_state_dict_round_trip(name):
    spec = encoder_spec(name)
    small = {"depth": 1} if spec.builder == TIMM_BUILDER else {}  # foundation-model presets: their width, one block
    torch.manual_seed(1)
    model = build_encoder(name, **small).eval()
    inputs = sample_input(spec.kind)
    out = model(inputs)
    assert out.shape == (2, spec.embed_dim) and torch.isfinite(out).all()
    model.train()
    model(inputs).square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    torch.manual_seed(2)
    twin = build_encoder(name, **small).eval()
    twin.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(inputs), model(inputs))


def test_names_by_kind_and_clear_errors():
    assert encoder_names("pixels") == (
        "vit_tiny",
        "vit_small",
        "vit_base",
        "uni",
        "uni2",
        "virchow2",
        "h_optimus_0",
        "prov_gigapath",
    )
    assert encoder_names(EncoderKind.grid) == ("vit4k_xs",)
    with pytest.raises(ValueError, match=r"unknown grid encoder 'vit_small'; choose one of \['vit4k_xs'\]"):
        encoder_spec("vit_small", "grid")
    with pytest.raises(ValueError, match="unknown encoder 'resnet50'"):
        build_encoder("resnet50")
    with pytest.raises(
        ConfigError, match=r"vit_patch_arch: unknown pixels encoder 'vit4k_xs'; choose one of \['vit_tiny'"
    ):
        check_architectures("vit4k_xs")
    with pytest.raises(
        ConfigError, match=r"vit_region_arch: unknown grid encoder 'vit_small'; choose one of \['vit4k_xs'\]"
    ):
        check_architectures("vit_small", "vit_small")
    check_architectures("timm:vit_base_patch16_224", "vit4k_xs")  # any timm name is a pixel encoder
