"""Metrics: COCO keypoint AP via pycocotools, OKS, OKS-NMS, confidence/OKS correlation, MPII PCKh."""
