"""Backbones, heads and cost accounting against published architectures and numbers."""
import math

import pytest
import torch

from rlepose.flows import RealNVP
from rlepose.models import (LiftingNet, ModelConfig, build_pose_model, complexity, count_params,
                            decode_heatmaps, gaussian_heatmaps, heatmap_mse_loss, hrnet, load_backbone, load_pretrained,
                            resnet, soft_argmax)

# Parameter counts printed in torchvision's model documentation (ImageNet classifiers).
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def torchvision_resnet_keys(depth: int) -> dict[str, tuple[int, ...]]:
    """Key → shape of torchvision's ResNet state dict, written out from the published
    architecture (He et al. 2016 Table 1; torchvision's v1.5 naming), not from an installed copy."""
    bottleneck = depth >= 50
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    expansion = 4 if bottleneck else 1
    keys: dict[str, tuple[int, ...]] = {}

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{p}"] = (c,)
        keys[f"{name}.num_batches_tracked"] = ()

    keys["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    c_in = 64
    for stage, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for b in range(n):
            p = f"layer{stage}.{b}"
            if bottleneck:
                keys[f"{p}.conv1.weight"] = (planes, c_in, 1, 1)
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{p}.bn1", planes); bn(f"{p}.bn2", planes); bn(f"{p}.bn3", planes * 4)
            else:
                keys[f"{p}.conv1.weight"] = (planes, c_in, 3, 3)
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn1", planes); bn(f"{p}.bn2", planes)
            if b == 0 and (stage > 1 or c_in != planes * expansion):
                keys[f"{p}.downsample.0.weight"] = (planes * expansion, c_in, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            c_in = planes * expansion
    keys["fc.weight"] = (1000, c_in)
    keys["fc.bias"] = (1000,)
    return keys


def _fake_checkpoint(keys):
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(s, generator=g) if s else torch.tensor(7)) for k, s in keys.items()}


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_resnet_matches_torchvision_names_shapes_and_size(depth):
    model = resnet(depth, num_classes=1000)
    expected = torchvision_resnet_keys(depth)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert count_params(model) == TORCHVISION_PARAMS[depth]


def test_torchvision_checkpoint_loads_strictly(tmp_path):
    ckpt = _fake_checkpoint(torchvision_resnet_keys(50))
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(ckpt, path)
    model = resnet(50, num_classes=1000)
    model.load_state_dict(torch.load(path), strict=True)
    report = load_pretrained(model, path, strict=True)
    assert not report.missing and not report.unexpected
    assert torch.equal(model.layer3[5].conv2.weight,
                       ckpt["layer3.5.conv2.weight"])
    # As a pose backbone (no classifier) the classifier is reported, or skipped on request.
    backbone = resnet(50, num_classes=0)
    assert load_pretrained(backbone, path).unexpected == ["fc.bias", "fc.weight"]
    assert load_pretrained(backbone, path, ignore=("fc.",), strict=True).ignored == ["fc.bias", "fc.weight"]
    features = backbone.eval().forward_features(torch.zeros(1, 3, 256, 192))
    assert features.shape == (1, 2048, 8, 6)


def test_loader_unwraps_prefixes_and_names_shape_mismatches(tmp_path):
    model = resnet(18, num_classes=0)
    sd = model.state_dict()
    for wrapped in ({"state_dict": {f"module.{k}": v for k, v in sd.items()}},
                    {"model": sd, "optimizer": {}, "epoch": 3},
                    {"state_dict": {f"model.{k}": v for k, v in sd.items()}}):
        report = load_pretrained(resnet(18, num_classes=0), wrapped, strict=True)
        assert len(report.loaded) == len(sd)
    mmpose_style = {"state_dict": {f"backbone.{k}": v for k, v in sd.items()} | {"keypoint_head.x": torch.zeros(1)}}
    assert len(load_pretrained(resnet(18, num_classes=0), mmpose_style, prefix="backbone.", strict=True).loaded) == len(sd)
    bad = dict(sd)
    bad["layer2.0.conv1.weight"] = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"layer2\.0\.conv1\.weight.*\(1, 2, 3, 3\).*\(128, 64, 3, 3\)"):
        load_pretrained(resnet(18, num_classes=0), bad)
    partial = {k: v for k, v in sd.items() if not k.startswith("layer4")}
    report = load_pretrained(resnet(18, num_classes=0), partial)
    assert report.missing and all(k.startswith("layer4") for k in report.missing)
    with pytest.raises(ValueError, match="strict"):
        load_pretrained(resnet(18, num_classes=0), partial, strict=True)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(model, tmp_path / "nowhere.pth")


def test_load_backbone_finds_it_in_pose_checkpoints_and_refuses_files_without_one(tmp_path):
    """`pretrained` takes the backbone out of an rlepose checkpoint (with or without a flow), an
    MMPose pose model (MMPose starts its "pretrained" RLE from a heatmap model) or ImageNet
    weights, leaving heads and flows out; a file with no backbone in it is an error, not a
    silent start from scratch."""
    torch.manual_seed(0)
    source = build_pose_model(ModelConfig("resnet18", "heatmap"))
    net, bare = source.state_dict(), source.backbone.state_dict()
    flow = {"loss.flow.s.0.0.weight": torch.ones(64, 2)}
    checkpoints = {
        "rlepose, RLE": {"state_dict": {f"model.{k}": v for k, v in net.items()} | flow, "epoch": 3},
        "rlepose, heatmap": {"state_dict": {f"model.{k}": v for k, v in net.items()}},
        "mmpose": {"meta": {}, "state_dict": {f"backbone.{k}": v for k, v in bare.items()}
                   | {"head.final_layer.weight": torch.ones(17, 256, 1, 1)}},
        "imagenet": bare | {"fc.weight": torch.ones(1000, 512), "fc.bias": torch.ones(1000)},
    }
    for name, ckpt in checkpoints.items():
        torch.manual_seed(1)
        target = build_pose_model(ModelConfig("resnet18", "regression"))
        head = {k: v.clone() for k, v in target.head.state_dict().items()}
        torch.save(ckpt, tmp_path / "file.pth")
        report = load_backbone(target.backbone, tmp_path / "file.pth")
        assert not report.missing and not report.unexpected and len(report.loaded) == len(bare), name
        assert all(torch.equal(v, bare[k]) for k, v in target.backbone.state_dict().items()), name
        assert all(torch.equal(v, head[k]) for k, v in target.head.state_dict().items()), name
    with pytest.raises(ValueError, match="no backbone weights.*keypoint_head"):
        load_backbone(target.backbone, {"state_dict": {"keypoint_head.final.weight": torch.ones(1)}})


def test_hrnet_size_and_cost_match_the_hrnet_paper():
    """HRNet paper, Table 1 (COCO val, 256×192), 1×1 heatmap layer for 17 joints included:
    W32 28.5M / 7.1 GFLOPs, W48 63.6M / 14.6 GFLOPs. Parameters match exactly. Our MACs
    (7.64 G for W32, equal to a hand sum of every convolution's weight size × output pixels)
    are 7.6% above the printed 7.1 for both widths alike; the W48/W32 ratio agrees with
    the paper's to 0.2%, so the gap is a constant factor in how the paper counted."""
    costs = {}
    for width, paper_params in ((32, 28.5e6), (48, 63.6e6)):
        model = build_pose_model(ModelConfig(f"hrnet_w{width}", "heatmap"))
        costs[width] = complexity(model, (1, 3, 256, 192))
        assert costs[width].params == pytest.approx(paper_params, rel=0.002)
    assert costs[48].macs / costs[32].macs == pytest.approx(14.6 / 7.1, rel=0.01)
    assert costs[32].macs / 1e9 == pytest.approx(7.1, rel=0.10)


def test_hrnet_layout_matches_reference_checkpoint_names():
    shapes = {k: tuple(v.shape) for k, v in hrnet(32).state_dict().items()}
    expected = {
        "conv2.weight": (64, 64, 3, 3),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "transition1.0.0.weight": (32, 256, 3, 3),
        "transition1.1.0.0.weight": (64, 256, 3, 3),
        "transition2.2.0.0.weight": (128, 64, 3, 3),
        "transition3.3.0.0.weight": (256, 128, 3, 3),
        "stage2.0.branches.1.3.conv2.weight": (64, 64, 3, 3),
        "stage3.3.fuse_layers.0.2.0.weight": (32, 128, 1, 1),
        "stage3.0.fuse_layers.2.0.0.0.weight": (32, 32, 3, 3),
        "stage3.0.fuse_layers.2.0.1.0.weight": (128, 32, 3, 3),
        "stage4.2.fuse_layers.0.3.0.weight": (32, 256, 1, 1),
        "stage4.1.fuse_layers.3.0.2.0.weight": (256, 32, 3, 3),
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    assert not any(k.startswith("stage4.2.fuse_layers.1") for k in shapes)  # single-scale output
    assert "transition2.0.0.weight" not in shapes  # unchanged branches pass through
    out = hrnet(32).eval()(torch.zeros(1, 3, 256, 192))
    assert out.shape == (1, 32, 64, 48)


def test_regression_model_outputs_and_confidence():
    model = build_pose_model(ModelConfig("resnet18", "regression", num_joints=5)).eval()
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.copy_(torch.linspace(-2, 2, 20))
    mu, sigma = model(torch.randn(2, 3, 256, 192))
    assert mu.shape == sigma.shape == (2, 5, 2)
    expected_mu = torch.linspace(-2, 2, 20)[:10].reshape(5, 2)
    expected_sigma = torch.sigmoid(torch.linspace(-2, 2, 20)[10:]).reshape(5, 2)
    assert torch.allclose(mu[0], expected_mu) and torch.allclose(sigma[1], expected_sigma)
    out = model.inference(torch.randn(2, 3, 256, 192))
    assert torch.allclose(out["joint_confidence"][0], 1 - expected_sigma.mean(-1))
    assert out["confidence"][0].item() == pytest.approx(1 - expected_sigma.mean().item(), rel=1e-6)
    assert not any(isinstance(m, RealNVP) for m in model.modules())  # the flow lives in the loss


def test_official_head_initialization_starts_sigma_at_a_half(tmp_path):
    """``fc_init_gain``: each half of the FC (µ̂ rows, σ̂ rows) Xavier-uniform with that gain,
    as the official code's two Linear layers; σ̂ then starts within a few % of 0.5."""
    from rlepose.demo import demo_config

    cfg = demo_config(tmp_path, model={"coord_norm": True, "fc_init_gain": 0.01}).model
    assert cfg.coord_norm and cfg.fc_init_gain == 0.01
    torch.manual_seed(0)
    official = build_pose_model(cfg).head
    default = build_pose_model(ModelConfig("resnet18", "regression")).head
    bound = 0.01 * math.sqrt(6 / (512 + 17 * 2))  # gain · √(6 / (fan_in + fan_out)) per half
    for half in official.fc.weight.detach().chunk(2):
        assert half.abs().max() <= bound
        assert half.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)  # uniform's std
    assert default.fc.weight.abs().max() > 10 * bound  # PyTorch's U(±1/√512)
    features = 2 * torch.rand(8, 512, 3, 3)  # non-negative, like a ReLU's output
    with torch.no_grad():
        _, sigma = official(features)
        _, sigma_default = default(features)
    assert (sigma - 0.5).abs().max() < 0.05 < (sigma_default - 0.5).abs().max()


def test_soft_argmax_against_hand_computed_expectations():
    logits = torch.full((1, 2, 4, 8), -1e4)
    logits[0, 0, 3, 5] = 0.0  # all mass at x index 5 of 8, y index 3 of 4
    logits[0, 1] = 0.0  # uniform: mean index (L−1)/2
    out = soft_argmax(logits)
    assert torch.allclose(out[0, 0], torch.tensor([5 / 8 - 0.5, 3 / 4 - 0.5]))
    assert torch.allclose(out[0, 1], torch.tensor([3.5 / 8 - 0.5, 1.5 / 4 - 0.5]))
    vol = torch.full((1, 1, 6, 4, 8), -1e4)
    vol[0, 0, 2, 1, 7] = 0.0
    vol[0, 0, 4, 1, 7] = 0.0  # two equal peaks in depth: z index 3 on average
    assert torch.allclose(soft_argmax(vol)[0, 0], torch.tensor([7 / 8 - 0.5, 1 / 4 - 0.5, 3 / 6 - 0.5]), atol=1e-6)


def test_integral_models_output_shapes():
    m2 = build_pose_model(ModelConfig("resnet18", "integral", num_joints=3)).eval()
    mu, sigma = m2(torch.zeros(1, 3, 256, 192))
    assert mu.shape == sigma.shape == (1, 3, 2)
    m3 = build_pose_model(ModelConfig("resnet18", "integral", num_joints=3, dim=3, depth_bins=8)).eval()
    mu, sigma = m3(torch.zeros(1, 3, 256, 256))
    assert mu.shape == sigma.shape == (1, 3, 3)
    assert mu.abs().max() <= 0.5


def test_gaussian_heatmap_target_and_quarter_pixel_decoding():
    g = torch.Generator().manual_seed(0)
    kpts = torch.rand(4, 17, 2, generator=g) * 0.8 - 0.4
    maps = gaussian_heatmaps(kpts, (64, 48), sigma=2.0)
    px = (kpts[..., 0] + 0.5) * 48
    assert maps.max() <= 1.0
    # the target is the Gaussian of the formula at an arbitrary pixel
    i, j = 10, 20
    v = math.exp(-((j - px[0, 0].item()) ** 2 + (i - (kpts[0, 0, 1].item() + 0.5) * 64) ** 2) / 8)
    assert maps[0, 0, i, j].item() == pytest.approx(v, rel=1e-5)
    decoded, peak = decode_heatmaps(maps)
    err_px = ((decoded - kpts) * torch.tensor([48.0, 64.0])).abs()
    assert err_px.max() <= 0.25 + 1e-5  # quarter-pixel shift: at most 1/4 heatmap pixel off
    naive = torch.stack([maps.flatten(2).argmax(-1) % 48, maps.flatten(2).argmax(-1) // 48], -1).float()
    naive_err = (naive - (kpts + 0.5) * torch.tensor([48.0, 64.0])).abs()
    assert err_px.mean() < naive_err.mean()  # the shift helps on average
    assert torch.all(peak > 0.88)  # the peak lies within half a pixel of the centre


def test_heatmap_mse_by_hand():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.ones(1, 2, 2, 2)
    target[0, 1] = 3.0
    weight = torch.tensor([[1.0, 0.0]])
    assert heatmap_mse_loss(pred, target, weight).item() == pytest.approx(0.5 * (1.0 + 0.0) / 2)
    assert heatmap_mse_loss(pred, target).item() == pytest.approx(0.5 * (1.0 + 9.0) / 2)


def test_paper_cost_numbers():
    """RLE paper Table 5 (256×192) and Table 8 (256×256); "GFLOPs" there are multiply-adds,
    with deconvolutions counted per output pixel (see rlepose.models.complexity)."""
    reg = complexity(build_pose_model(ModelConfig("resnet50", "regression")), (1, 3, 256, 192), deconv="output")
    hm = complexity(build_pose_model(ModelConfig("resnet50", "heatmap")), (1, 3, 256, 192), deconv="output")
    assert reg.params == pytest.approx(23.6e6, rel=0.005) and reg.macs / 1e9 == pytest.approx(4.0, rel=0.02)
    assert hm.params == pytest.approx(34.0e6, rel=0.005) and hm.macs / 1e9 == pytest.approx(9.7, rel=0.02)
    assert hm.head_macs / 1e9 == pytest.approx(5.7, rel=0.02)
    # Paper: the regression head costs 1/28500 of the heatmap head (its 0.0002 G is rounded).
    assert 20_000 < hm.head_macs / reg.head_macs < 60_000
    torch_rule = complexity(build_pose_model(ModelConfig("resnet50", "heatmap")), (1, 3, 256, 192))
    assert torch_rule.macs / 1e9 == pytest.approx(4.0 + 5.65 / 4, rel=0.02)  # 4× fewer deconv MACs
    reg3d = complexity(build_pose_model(ModelConfig("resnet50", "regression", dim=3)), (1, 3, 256, 256))
    int3d = complexity(build_pose_model(ModelConfig("resnet50", "integral", dim=3)), (1, 3, 256, 256), deconv="output")
    assert reg3d.params == pytest.approx(23.8e6, rel=0.005) and reg3d.macs / 1e9 == pytest.approx(5.4, rel=0.02)
    assert int3d.params == pytest.approx(34.3e6, rel=0.005) and int3d.macs / 1e9 == pytest.approx(14.1, rel=0.03)
    assert count_params(LiftingNet()) == pytest.approx(4.3e6, rel=0.02)


def test_lifting_net_shapes_and_sigma_range():
    net = LiftingNet(num_joints_in=16, num_joints_out=17).eval()
    mu, sigma = net(torch.randn(5, 16, 2))
    assert mu.shape == sigma.shape == (5, 17, 3)
    assert torch.all((sigma > 0) & (sigma < 1))


def test_mobilenet_v2_matches_torchvision_layout_and_size():
    """Torchvision's MobileNetV2: 3,504,872 parameters with the 1000-class classifier, and its
    key names (independently written out here for the stem, a t=1 block, an expanding block
    with a shortcut, and the last convolution)."""
    from rlepose.models.mobilenet import make_divisible, mobilenet_v2

    model = mobilenet_v2(1.0, num_classes=1000)
    assert count_params(model) == 3_504_872
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 314
    assert shapes["features.0.0.weight"] == (32, 3, 3, 3)
    assert shapes["features.1.conv.0.0.weight"] == (32, 1, 3, 3)  # t = 1: depthwise first
    assert shapes["features.1.conv.1.weight"] == (16, 32, 1, 1)
    assert shapes["features.3.conv.0.0.weight"] == (144, 24, 1, 1)  # 24 → 6·24 expansion
    assert shapes["features.3.conv.1.0.weight"] == (144, 1, 3, 3)
    assert shapes["features.3.conv.3.running_var"] == (24,)
    assert shapes["features.18.0.weight"] == (1280, 320, 1, 1)
    assert shapes["classifier.1.weight"] == (1000, 1280)
    assert model.features[3].use_res_connect and not model.features[2].use_res_connect
    assert [make_divisible(v) for v in (16 * 0.5, 24 * 0.5, 32 * 0.75, 1280 * 0.5)] == [8, 16, 24, 640]
    pose = build_pose_model(ModelConfig("mobilenet_v2", "regression")).eval()
    mu, sigma = pose(torch.zeros(2, 3, 96, 64))
    assert mu.shape == sigma.shape == (2, 17, 2)
    assert pose.backbone.forward_features(torch.zeros(1, 3, 96, 64)).shape == (1, 1280, 3, 2)
    half = build_pose_model(ModelConfig("mobilenet_v2_0.5", "integral", deconv_channels=64))
    assert half.backbone.features[0][0].out_channels == 16 and half(torch.zeros(1, 3, 64, 48))[0].shape == (1, 17, 2)
