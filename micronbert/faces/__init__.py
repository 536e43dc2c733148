"""Faces: detection + 68 landmarks (detect), template (template), similarity alignment of images and
clips (align), the per-sample crop cache (cache), `prepare` (prepare) and `faces` (extract).

The 68-point landmark model (dlib's shape_predictor_68_face_landmarks.dat, shipped in
face_recognition_models) was trained on iBUG 300-W, whose licence excludes commercial use.
"""
from micronbert.faces.align import (AlignedClip, AlignedFace, FaceAligner, apply_transform, similarity_transform,
                                    smooth_transforms, warp)
from micronbert.faces.cache import CachedSample, FaceCache
from micronbert.faces.detect import (Detection, FaceDetector, detector_names, get_detector, model_path,
                                     register_detector)
from micronbert.faces.template import (DEFAULT_MARGIN, DEFAULT_SIZE, REGIONS, eye_centres, region_points,
                                       template_landmarks, unit_template)

__all__ = [
    "AlignedClip", "AlignedFace", "FaceAligner", "apply_transform", "similarity_transform", "smooth_transforms",
    "warp", "CachedSample", "FaceCache", "Detection", "FaceDetector", "detector_names", "get_detector",
    "model_path", "register_detector", "DEFAULT_MARGIN", "DEFAULT_SIZE", "REGIONS", "eye_centres",
    "region_points", "template_landmarks", "unit_template",
]
