"""Data: keypoint sets, the top-down transform, COCO / MPII / Human3.6M loaders, and the
embedded synthetic dataset."""
