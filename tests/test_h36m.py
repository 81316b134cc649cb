"""Human3.6M cameras, loaders, generated skeletons and 3-D metrics against independent truths."""
import numpy as np
import pytest

from rlepose.data.h36m import (BONE_MM, FROM_32, PARENTS, TRAIN_SUBJECTS, generate_pose_set, load_cameras,
                               load_h36m_frames, load_h36m_poses)
from rlepose.evaluation.pose3d import mpjpe, pa_mpjpe, per_action_table, procrustes_align, root_relative


@pytest.fixture(scope="module")
def h36m(fixtures):
    return fixtures / "h36m"


def test_projecting_camera_space_joints_gives_the_2d_labels(h36m):
    cams = load_cameras(h36m / "cameras.pkl")
    frames = load_h36m_frames(h36m / "test_h36m_body3d.npz")
    assert frames.subject == ["S1", "S5", "S7", "S8"]
    for i in range(4):
        cam = cams[(frames.subject[i], frames.camera[i])]
        uv = cam.project(frames.joints_cam[i] / 1000.0)
        assert np.abs(uv - frames.joints_2d[i]).max() < 1e-3  # pixels
        assert np.abs(cam.project(frames.joints_cam[i] / 1000.0, distort=False) - frames.joints_2d[i]).max() > 0.5


def test_world_frame_is_upright_with_feet_on_the_floor(h36m):
    cams = load_cameras(h36m / "cameras.pkl")
    frames = load_h36m_frames(h36m / "test_h36m_body3d.npz")
    for i in (0, 2, 3):  # standing actions (frame 1 is SittingDown)
        cam = cams[(frames.subject[i], frames.camera[i])]
        world = cam.camera_to_world(frames.joints_cam[i] / 1000.0)
        assert world[10, 2] - world[0, 2] > 0.5  # head ≥ 0.5 m above the pelvis
        assert world[[3, 6], 2].max() < 0.25  # ankles near z = 0
        assert np.allclose(cam.world_to_camera(world), frames.joints_cam[i] / 1000.0)
        x = frames.joints_cam[i] / 1000.0
        assert np.allclose(cam.backproject(cam.project(x, distort=False), x[:, 2]), x)


def test_keypoint_archive_layout_round_trips_the_fixture(h36m, tmp_path):
    """Write the fixture's S1 frame as world positions in the 32-joint archive layout; the
    loader must give back the camera-space joints and their projection."""
    cams = load_cameras(h36m / "cameras.pkl")
    frames = load_h36m_frames(h36m / "test_h36m_body3d.npz", subjects=("S1",))
    cam = cams[("S1", "54138969")]
    world17 = cam.camera_to_world(frames.joints_cam[0] / 1000.0)
    world32 = np.zeros((3, 32, 3))
    world32[:, list(FROM_32)] = world17
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d={"S1": {"Directions 1": world32}})
    poses = load_h36m_poses(tmp_path / "data_3d_h36m.npz", h36m / "cameras.pkl", ("S1",))
    assert poses.joints_cam.shape == (12, 17, 3)  # 3 frames × 4 cameras
    first = [i for i, c in enumerate(poses.camera) if c == "54138969"][0]
    assert np.allclose(poses.joints_cam[first], frames.joints_cam[0], atol=1e-6)
    assert np.allclose(poses.joints_2d[first], frames.joints_2d[0], atol=1e-3)
    assert poses.action[0] == "Directions"


def test_generated_skeletons_are_plausible(h36m):
    cams = load_cameras(h36m / "cameras.pkl")
    a = generate_pose_set(300, cams, TRAIN_SUBJECTS, seed=0)
    assert a.generated and a.joints_cam.shape == (300, 17, 3)
    bones = np.stack([np.linalg.norm(a.joints_cam[:, j] - a.joints_cam[:, PARENTS[j]], axis=-1) for j in range(1, 17)], 1)
    ref = np.array([BONE_MM[j] for j in range(1, 17)])
    assert np.all(np.abs(bones / ref - 1) < 0.25)
    assert np.allclose(bones[:, 0], bones[:, 3]) and np.allclose(bones[:, 11], bones[:, 14])  # left = right
    assert (a.joints_2d >= 0).all() and (a.joints_2d < a.image_size[:, None]).all()
    assert 2000 < a.joints_cam[:, 0, 2].min() and a.joints_cam[:, 0, 2].max() < 9000  # metres away from the camera
    b = generate_pose_set(300, cams, TRAIN_SUBJECTS, seed=0)
    assert np.array_equal(a.joints_cam, b.joints_cam)
    # the 2-D input is the projection of the 3-D target through that camera
    cam = cams[(a.subject[5], a.camera[5])]
    assert np.allclose(cam.project(a.joints_cam[5] / 1000.0), a.joints_2d[5])


def _rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_mpjpe_and_pa_mpjpe_hand_cases():
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 300, (5, 17, 3))
    shifted = gt + np.array([30.0, 40.0, 0.0])
    assert mpjpe(shifted, gt) == pytest.approx(np.full(5, 50.0))
    assert mpjpe(root_relative(shifted), root_relative(gt)) == pytest.approx(np.zeros(5), abs=1e-9)
    similar = 1.3 * gt @ _rotation([1, 2, 3], 0.7).T + np.array([100.0, -50.0, 20.0])
    assert pa_mpjpe(similar, gt) == pytest.approx(np.zeros(5), abs=1e-6)
    assert mpjpe(similar, gt).min() > 10
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a reflection is not a rotation: error stays
    assert pa_mpjpe(mirrored, gt).min() > 1.0
    noisy = gt + rng.normal(0, 20, gt.shape)
    assert np.all(pa_mpjpe(noisy, gt) <= mpjpe(noisy, gt) + 1e-9)


def test_procrustes_rotation_matches_scipy():
    from scipy.linalg import orthogonal_procrustes

    rng = np.random.default_rng(1)
    gt = rng.normal(size=(1, 17, 3))
    pred = gt @ _rotation([0, 1, 1], 0.4).T + rng.normal(0, 0.05, gt.shape)
    p, g = pred[0] - pred[0].mean(0), gt[0] - gt[0].mean(0)
    r, _ = orthogonal_procrustes(p, g)  # p @ r ≈ g
    s = np.trace(g.T @ p @ r) / (p**2).sum()
    assert np.allclose(procrustes_align(pred, gt)[0], s * p @ r + gt[0].mean(0), atol=1e-8)


def test_per_action_table_by_hand():
    gt = np.zeros((3, 17, 3))
    pred = np.zeros((3, 17, 3))
    pred[0, 1:, 0] = 17.0  # non-root joints 17 mm off: MPJPE 16
    pred[2, 1:, 1] = 34.0  # 32
    table = per_action_table(pred, gt, ["Walk", "Walk", "Sit"])
    assert table["Walk"]["MPJPE"] == pytest.approx(8.0) and table["Sit"]["MPJPE"] == pytest.approx(32.0)
    assert table["Average"]["MPJPE"] == pytest.approx(20.0) and table["All"]["MPJPE"] == pytest.approx(16.0)
