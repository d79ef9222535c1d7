"""Faces instrument: frontal faces found by OpenCV's Haar cascade, and each face's skin tone.

Contract: `measure_faces(rgb)` returns {"count": n, "faces": [{x, y, w, h, ita, monk, lab,
pixels}, ...]} for an (H, W, 3) uint8 sRGB image, deterministically, with nothing downloaded:
the cascade file ships inside the opencv-python(-headless) 4.x wheel (`cv2.data.haarcascades`).
cv2 is imported inside the functions that need it, so importing this module stays cheap.

What the numbers are, and are not: a machine's reading of rendered pixels. ITA° (individual
typology angle, Chardon et al. 1991) and the nearest Monk Skin Tone swatch (Monk 2019) describe
the colour of the lit face in the image, not a person's identity, and the Haar detector itself
misses faces unevenly (profiles, occlusion, low contrast) — a count is a lower bound.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..colour import delta_e76, hex_to_srgb, srgb_to_lab

Float = NDArray[np.float64]

CASCADE = "haarcascade_frontalface_default.xml"
SCALE_FACTOR = 1.1  # the image pyramid's step: 10 % per level, OpenCV's usual trade-off
MIN_NEIGHBORS = 5  # overlapping raw hits needed to keep a face; 3 lets textures through
# The skin sample: an ellipse centred in the box with these semi-axes (fractions of w and h),
# which keeps the cheeks, nose and mouth and leaves out the hair and background in the corners.
SKIN_ELLIPSE = (0.35, 0.42)
# Pixels this dark or light are clipped shadows and specular highlights, which carry no tone.
# The bounds are kept wide on purpose: Monk 10 has L* ≈ 15 and Monk 1 L* ≈ 94, and a mask
# tuned to "typical" skin would cut exactly the ends of the scale it is meant to measure.
SKIN_L_RANGE = (5.0, 97.0)

# The Monk Skin Tone Scale's ten swatches, lightest (1) to darkest (10), as Google publishes them.
MONK = ("#f6ede4", "#f3e7db", "#f7ead0", "#eadaba", "#d7bd96",
        "#a07e56", "#825c43", "#604134", "#3a312a", "#292420")
MONK_LAB: Float = srgb_to_lab(np.stack([hex_to_srgb(code) for code in MONK]))

# Chardon et al. (1991)'s ITA° categories, lower bounds (exclusive), lightest first.
ITA_CATEGORIES = (("very light", 55.0), ("light", 41.0), ("intermediate", 28.0),
                  ("tan", 10.0), ("brown", -30.0), ("dark", -math.inf))


def detect_faces(rgb: NDArray[np.uint8], min_size_frac: float = 0.1) -> list[dict[str, int]]:
    """Frontal faces in an (H, W, 3) uint8 sRGB image as boxes {x, y, w, h}, in reading order.

    Detector: OpenCV's `haarcascade_frontalface_default.xml` (Viola-Jones) on the histogram-
    equalised grey image (equalising lifts low-contrast faces, dark skin in dim light among them),
    `scaleFactor` SCALE_FACTOR, `minNeighbors` MIN_NEIGHBORS, and `minSize` a square of
    min_size_frac × the image's shorter side, so a 512-pixel image ignores faces under 51 pixels.
    """
    cv2 = _cv2()
    _check_image(rgb)
    if not 0 < min_size_frac <= 1:
        raise ValueError(f"faces: min_size_frac must be in (0, 1], got {min_size_frac}")
    grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    side = max(1, round(min_size_frac * min(rgb.shape[:2])))
    found = _cascade().detectMultiScale(grey, scaleFactor=SCALE_FACTOR,
                                        minNeighbors=MIN_NEIGHBORS, minSize=(side, side))
    boxes = [{"x": int(x), "y": int(y), "w": int(w), "h": int(h)} for x, y, w, h in found]
    return sorted(boxes, key=lambda box: (box["y"], box["x"], box["w"]))


def ita(L: float, b: float) -> float:
    """The individual typology angle ITA° = arctan((L* − 50) / b*) × 180 / π, in degrees.

    Plain arctan, not atan2: ITA is defined on the ratio, so it lies in (−90°, 90°) and a
    larger value is a lighter skin at any b*. atan2 would put bluish (b* < 0) pixels in other
    quadrants. At b* = 0 the ratio is infinite and ITA° is the limit: +90 above L* = 50, −90
    below it, and 0 at L* = 50 exactly.
    """
    if b == 0:
        return math.copysign(90.0, L - 50.0) if L != 50 else 0.0
    return math.degrees(math.atan((L - 50.0) / b))


def ita_category(angle: float) -> str:
    """Chardon et al. (1991)'s name for an ITA°: very light > 55 > light > 41 > intermediate >
    28 > tan > 10 > brown > −30 > dark."""
    return next(name for name, low in ITA_CATEGORIES if angle > low)


def monk(lab: Float | list[float]) -> int:
    """The Monk Skin Tone swatch (1..10) nearest to a CIELAB colour by ΔE76."""
    return int(np.argmin(delta_e76(MONK_LAB, np.asarray(lab, dtype=np.float64)))) + 1


def skin_pixels(crop: NDArray[np.uint8]) -> Float:
    """CIELAB values (n, 3) of the skin sample of a face crop (the detector's box).

    The sample is the central ellipse SKIN_ELLIPSE of the crop, without pixels whose L* falls
    outside SKIN_L_RANGE. No colour-range skin classifier is used: the usual YCrCb ranges were
    fitted to light skin and would bias the very measure taken here. Eyes, brows and lips stay
    in the sample; the median in `face_tone` is what keeps them from moving the result.
    """
    _check_image(crop)
    height, width = crop.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    dy = (ys + 0.5 - height / 2) / (SKIN_ELLIPSE[1] * height)
    dx = (xs + 0.5 - width / 2) / (SKIN_ELLIPSE[0] * width)
    lab = srgb_to_lab(crop[dx**2 + dy**2 <= 1.0])
    keep = (lab[:, 0] > SKIN_L_RANGE[0]) & (lab[:, 0] < SKIN_L_RANGE[1])
    return lab[keep]


def face_tone(rgb: NDArray[np.uint8], box: dict[str, int]) -> dict[str, Any]:
    """Skin tone of one face: {"ita": ITA°, "monk": 1..10, "lab": [L, a, b], "pixels": n}.

    `lab` is the per-channel median of the skin sample, ITA° is computed from its L* and b*, and
    `monk` is the swatch nearest to it. A sample with no pixels gives None for all three.
    """
    x, y, w, h = (box[key] for key in ("x", "y", "w", "h"))
    lab = skin_pixels(rgb[max(0, y) : y + h, max(0, x) : x + w])
    if len(lab) == 0:
        return {"ita": None, "monk": None, "lab": None, "pixels": 0}
    median = np.median(lab, axis=0)
    return {
        "ita": round(ita(float(median[0]), float(median[2])), 2),
        "monk": monk(median),
        "lab": [round(float(v), 2) + 0.0 for v in median],
        "pixels": len(lab),
    }


def measure_faces(rgb: NDArray[np.uint8], min_size_frac: float = 0.1) -> dict[str, Any]:
    """Every frontal face of an image with its box and skin tone: {"count": n, "faces": [...]}."""
    faces = [{**box, **face_tone(rgb, box)} for box in detect_faces(rgb, min_size_frac)]
    return {"count": len(faces), "faces": faces}


def _check_image(rgb: NDArray[np.uint8]) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise ValueError(f"faces: need an (H, W, 3) uint8 RGB image, got {dtype} {shape}")


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as error:  # a soft dependency: only this instrument needs it
        raise ImportError("the faces instrument needs OpenCV 4.x with its Haar cascades: "
                          "pip install 'opencv-python-headless>=4.8,<5'") from error
    return cv2


@functools.cache
def _cascade() -> Any:
    """The Haar cascade, loaded once per process (reading the XML takes ~50 ms)."""
    cv2 = _cv2()
    path = cv2.data.haarcascades + CASCADE
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise RuntimeError(f"faces: cannot load the Haar cascade {path}; OpenCV 5 no longer "
                           "ships it, install 'opencv-python-headless>=4.8,<5'")
    return classifier


# -- the `faces:` key of a `measure` directive --------------------------------------------------
VERSION = 1  # bump when the same image would give other boxes or tones


def parse(body: Any, ctx: Any) -> Any:
    from ..specs import preview

    value = body.raw("faces", None)
    if value is None or value is False:
        return None
    if value is not True:
        raise body.error("faces", f"must be true or false, got {preview(value)}")
    from importlib import metadata

    try:  # the detector's release is an input: another cascade may find other faces
        opencv = metadata.version("opencv-python-headless")
    except metadata.PackageNotFoundError:
        opencv = "absent"
    return {"opencv": opencv}


def jobs(settings: Any, image: Any, ctx: Any) -> list[Any]:
    from . import image_job

    return [image_job("measure.faces", settings, image, VERSION)]


def run(jobs: list[Any], options: dict[str, Any]) -> Any:
    """Runner for "measure.faces" (OpenCV, no torch)."""
    from . import run_each

    cv2 = _cv2()
    env = {"opencv": cv2.__version__, "cascade": CASCADE, "scale_factor": SCALE_FACTOR,
           "min_neighbors": MIN_NEIGHBORS}
    yield from run_each(lambda rgb, job: measure_faces(rgb), env, jobs, options)


def summarise(settings: Any, groups: list[Any], by_image: dict[str, list[Any]],
              results: Any) -> dict[str, Any]:
    from . import without_withheld

    groups, held = without_withheld(groups, results)
    rows = []
    for group in groups:
        found = results.gather(group.images, by_image, lambda j: j.type == "measure.faces")
        n = len(found)
        with_face = sum(record["data"]["count"] > 0 for _, record in found)
        tones = [f for _, record in found for f in record["data"]["faces"]
                 if f.get("ita") is not None]
        monk_counts = [sum(1 for f in tones if f["monk"] == m) for m in range(1, 11)]
        itas = sorted(f["ita"] for f in tones)
        median = itas[len(itas) // 2] if len(itas) % 2 else (
            (itas[len(itas) // 2 - 1] + itas[len(itas) // 2]) / 2 if itas else None)
        rows.append({"group": group.label, "n": n, "with_face": with_face,
                     "faces": len(tones), "monk": monk_counts, "ita": median,
                     "category": ita_category(median) if median is not None else None})
    return {"rows": rows, "swatches": MONK, "opencv": settings["opencv"], "withheld": held,
            **results.problems()}


def describe(job: Any) -> tuple[str, str]:
    return "faces", f"faces and skin tone in image {job.inputs['image'][:12]}"


def _instrument() -> Any:
    from . import Instrument

    return Instrument(
        name="faces", title="Faces and skin tone",
        doc="frontal faces (OpenCV Haar cascade), each face's ITA° and nearest Monk swatch",
        parse=parse, jobs=jobs, summarise=summarise,
        runners={"measure.faces": "generator.instruments.faces:run"}, describe=describe)


INSTRUMENT = _instrument()
