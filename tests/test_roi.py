"""RoIAlign and box NMS against hand-computed values and a literal transcription of
torchvision's per-sample loop (its C++ kernel, written out in Python)."""
import numpy as np
import pytest
import torch

from rlepose.models.roi import box_nms, multilevel_roi_align, pyramid_level, roi_align


def reference_roi_align(features, roi, ph, pw, scale, ratio, aligned):
    """torchvision's roi_align, one RoI, sample by sample (roi_align_kernel.cpp)."""
    _, c, h, w = features.shape
    b, x1, y1, x2, y2 = [float(v) for v in roi]
    off = 0.5 if aligned else 0.0
    sx, sy, ex, ey = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
    rw, rh = ex - sx, ey - sy
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    bw, bh = rw / pw, rh / ph
    f = features[int(b)].double().numpy()
    out = np.zeros((c, ph, pw))

    def sample(y, x):
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return np.zeros(c)
        y, x = max(y, 0.0), max(x, 0.0)
        yl, xl = int(y), int(x)
        if yl >= h - 1:
            yh = yl = h - 1
            y = float(yl)
        else:
            yh = yl + 1
        if xl >= w - 1:
            xh = xl = w - 1
            x = float(xl)
        else:
            xh = xl + 1
        ly, lx = y - yl, x - xl
        return (1 - ly) * (1 - lx) * f[:, yl, xl] + (1 - ly) * lx * f[:, yl, xh] + ly * (1 - lx) * f[:, yh, xl] \
            + ly * lx * f[:, yh, xh]

    for i in range(ph):
        for j in range(pw):
            acc = np.zeros(c)
            for iy in range(ratio):
                for ix in range(ratio):
                    acc += sample(sy + i * bh + (iy + 0.5) * bh / ratio, sx + j * bw + (ix + 0.5) * bw / ratio)
            out[:, i, j] = acc / ratio ** 2
    return out


def test_a_linear_map_gives_its_value_at_each_bin_centre():
    """On f(y, x) = 10y + x bilinear sampling is exact, so each bin is f at its centre."""
    h, w = 8, 10
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    features = (10 * ys + xs)[None, None]
    rois = torch.tensor([[0, 2.0, 1.0, 8.0, 7.0]], dtype=torch.float64)  # 6 × 6 input pixels, stride 1
    out = roi_align(features, rois, (3, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    # bins 3 wide (x) and 2 high (y); centres at x1 − ½ + (j + ½)·3, y1 − ½ + (i + ½)·2
    want = [[10 * (0.5 + (i + 0.5) * 2) + (1.5 + (j + 0.5) * 3) for j in range(2)] for i in range(3)]
    assert torch.allclose(out[0, 0], torch.tensor(want, dtype=torch.float64))


def test_matches_torchvisions_sampling_rule_everywhere():
    """Random maps and RoIs, some across the border, both alignment modes, several strides."""
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(2, 3, 7, 9)))
    rois = torch.tensor([[0, 3.0, 2.0, 20.0, 30.0], [1, -10.0, -6.0, 12.0, 9.0], [1, 30.0, 20.0, 40.0, 33.0],
                         [0, 5.0, 5.0, 5.5, 5.2]], dtype=torch.float64)
    for aligned in (True, False):
        for scale, ratio in ((0.25, 2), (0.5, 1), (0.25, 3)):
            out = roi_align(features, rois, (4, 3), scale, ratio, aligned)
            for r in range(len(rois)):
                want = reference_roi_align(features, rois[r], 4, 3, scale, ratio, aligned)
                assert np.allclose(out[r].numpy(), want, atol=1e-10), (aligned, scale, ratio, r)
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(features, rois, (2, 2), 0.25, 0)


def test_each_roi_is_read_from_its_own_pyramid_level():
    rois = torch.tensor([[0, 0, 0, 50, 50], [0, 0, 0, 112, 112], [0, 0, 0, 224, 224], [0, 0, 0, 600, 600]], dtype=torch.float32)
    # ⌊4 + log2(√(wh)/224)⌋: 50 → 1.8 → level 3 (clamped), 112 → 3, 224 → 4, 600 → 5.4 → 5
    assert pyramid_level(rois).tolist() == [0, 0, 1, 2]
    torch.manual_seed(0)
    pyramid = [torch.randn(1, 4, 64 // s, 64 // s) for s in (8, 16, 32)]
    out = multilevel_roi_align(pyramid, (8, 16, 32), rois, (2, 2))
    for i, level in enumerate(pyramid_level(rois).tolist()):
        stride = (8, 16, 32)[level]
        assert torch.allclose(out[i], roi_align(pyramid[level], rois[i:i + 1], (2, 2), 1 / stride)[0])


def test_box_nms_keeps_the_best_of_each_overlapping_group():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9], [21, 21, 31, 31.0]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.3, 0.6])
    # IoUs: (1, 0) 81/119 = 0.68, (1, 3) 72/118 = 0.61, (0, 3) 90/100 = 0.9, (4, 2) 81/119 = 0.68
    assert box_nms(boxes, scores, 0.5).tolist() == [1, 4]
    assert box_nms(boxes, scores, 0.7).tolist() == [1, 0, 4, 2]  # 3 falls to 0, kept before it
    assert box_nms(boxes, scores, 0.65).tolist() == [1, 4, 3]  # 0 falls to 1, so 3 survives
