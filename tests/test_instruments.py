"""Measuring instruments against known truth: colour, intervals, palettes, faces, diversity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from generator.colour import (
    chroma,
    hex_to_srgb,
    hue_angle,
    lab_to_hex,
    lab_to_srgb,
    srgb_to_lab,
    to_uint8,
)
from generator.instruments import diversity, faces, palette
from generator.stats import vendi, wilson


def solid(rgb: tuple[int, int, int], height: int = 8, width: int = 8) -> np.ndarray:
    return np.tile(np.array(rgb, dtype=np.uint8), (height, width, 1))


# -- colour ----------------------------------------------------------------------------------
# sRGB primaries in CIELAB (D65), as tabulated by Lindbloom's calculator and colormath.
@pytest.mark.parametrize(("rgb", "lab"), [
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((255, 0, 0), (53.2408, 80.0925, 67.2032)),
    ((0, 255, 0), (87.7347, -86.1827, 83.1793)),
    ((0, 0, 255), (32.2970, 79.1875, -107.8602)),
    ((128, 128, 128), (53.5850, 0.0, 0.0)),
])
def test_srgb_to_lab_reference_values(rgb: tuple[int, int, int],
                                      lab: tuple[float, float, float]) -> None:
    assert srgb_to_lab(np.array(rgb, dtype=np.uint8)) == pytest.approx(lab, abs=1e-3)


def test_uint8_and_float_input_agree() -> None:
    rgb = np.array([[12, 200, 99], [255, 128, 0]], dtype=np.uint8)
    assert np.allclose(srgb_to_lab(rgb), srgb_to_lab(rgb / 255.0))


def test_other_integer_types_are_refused() -> None:
    with pytest.raises(TypeError, match="uint8"):
        srgb_to_lab(np.array([255, 0, 0], dtype=np.int64))


def test_every_uint8_colour_survives_the_round_trip() -> None:
    levels = np.arange(0, 256, 5, dtype=np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels), axis=-1).reshape(-1, 3)
    assert np.array_equal(to_uint8(lab_to_srgb(srgb_to_lab(rgb))), rgb)


def test_hex_round_trip_and_lch() -> None:
    assert lab_to_hex(srgb_to_lab(hex_to_srgb("#a07e56"))) == "#a07e56"
    red = srgb_to_lab(np.array([255, 0, 0], dtype=np.uint8))
    assert chroma(red) == pytest.approx(math.hypot(80.0925, 67.2032), abs=1e-3)
    assert hue_angle(red) == pytest.approx(39.999, abs=1e-2)
    assert hue_angle(np.array([50.0, 0.0, -10.0])) == pytest.approx(270.0)


# -- Wilson intervals --------------------------------------------------------------------------
# 81/263 … 29/29: Newcombe (1998), "Two-sided confidence intervals for the single proportion",
# Statist. Med. 17:857–872, illustrative intervals, method 3 (score, no continuity correction).
# k/10 rows: the same formula, checked by hand:
# centre = (p + z²/2n)/(1 + z²/n), half = z/(1 + z²/n)·sqrt(p(1−p)/n + z²/4n²).
@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0),
    (0, 10, 0.0, 0.2775),
    (1, 10, 0.0179, 0.4042),
    (5, 10, 0.2366, 0.7634),
])
def test_wilson_matches_published_intervals(k: int, n: int, low: float, high: float) -> None:
    assert wilson(k, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_edges() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 7)[0] == 0.0 and wilson(7, 7)[1] == 1.0
    low, high = wilson(3, 10)
    assert (1 - high, 1 - low) == pytest.approx(wilson(7, 10))  # symmetric in k <-> n − k
    for bad in [(-1, 10), (11, 10), (1.5, 10)]:
        with pytest.raises(ValueError, match="wilson"):
            wilson(*bad)  # type: ignore[arg-type]


# -- Vendi ----------------------------------------------------------------------------------------
def test_vendi_counts_distinct_directions() -> None:
    assert vendi(np.tile([0.3, -1.0, 2.0], (6, 1))) == pytest.approx(1.0)
    assert vendi(np.eye(5)) == pytest.approx(5.0)
    assert vendi(np.eye(5, 64) * 3.0) == pytest.approx(5.0)  # n < d and scale do not matter
    two = np.vstack([np.tile([1.0, 0.0, 0.0], (4, 1)), np.tile([0.0, 2.0, 0.0], (4, 1))])
    assert vendi(two) == pytest.approx(2.0)
    assert vendi(np.vstack([two] * 10)) == pytest.approx(2.0)  # n > d takes the d × d route
    unequal = np.vstack([np.tile([1.0, 0.0], (3, 1)), [[0.0, 1.0]]])  # shares 3/4 and 1/4
    assert vendi(unequal) == pytest.approx(math.exp(-(0.75 * math.log(0.75)
                                                      + 0.25 * math.log(0.25))))
    assert vendi(unequal, q=math.inf) == pytest.approx(4 / 3)
    assert vendi(unequal, q=2) == pytest.approx(1 / (0.75**2 + 0.25**2))


def test_vendi_refuses_zero_rows() -> None:
    with pytest.raises(ValueError, match="row 1"):
        vendi(np.array([[1.0, 0.0], [0.0, 0.0]]))


# -- palette ------------------------------------------------------------------------------------
RED, BLUE = (255, 0, 0), (0, 0, 255)


def test_single_colour_image_is_that_colour() -> None:
    result = palette.image_palette(solid((18, 52, 86)), k=5)
    assert result["colours"] == [{"hex": "#123456",
                                  "lab": [pytest.approx(v, abs=1e-4) for v in
                                          srgb_to_lab(np.array([18, 52, 86], np.uint8))],
                                  "share": 1.0}]


def test_half_red_half_blue() -> None:
    image = np.concatenate([solid(RED, 200, 150), solid(BLUE, 200, 150)], axis=1)
    result = palette.image_palette(image, k=2)  # 60 000 pixels: the grid sample is taken
    assert [c["hex"] for c in result["colours"]] in (["#ff0000", "#0000ff"],
                                                      ["#0000ff", "#ff0000"])
    assert [c["share"] for c in result["colours"]] == pytest.approx([0.5, 0.5], abs=0.01)
    assert result["lightness"] == pytest.approx((53.2408 + 32.2970) / 2, abs=0.5)
    hues = result["hues"]
    assert hues[1] == pytest.approx(0.5, abs=0.01)  # red, h_ab = 40°
    assert hues[10] == pytest.approx(0.5, abs=0.01)  # blue, h_ab = 306°
    assert sum(hues) == pytest.approx(1.0)


def test_kmeans_finds_planted_colours_through_noise() -> None:
    rng = np.random.default_rng(7)
    image = np.concatenate([solid(RED, 64, 48), solid((0, 160, 0), 64, 16)], axis=1)
    noisy = np.clip(image + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)
    result = palette.image_palette(noisy, k=2, seed=3)
    assert [c["share"] for c in result["colours"]] == pytest.approx([0.75, 0.25], abs=1e-6)
    assert result["colours"][0]["lab"] == pytest.approx([53.24, 80.09, 67.20], abs=3)
    assert palette.image_palette(noisy, k=2, seed=3) == result  # deterministic
    assert json.loads(json.dumps(result)) == result


def test_black_white_and_grey_have_no_hue() -> None:
    black = palette.image_palette(solid((0, 0, 0)), k=3)
    white = palette.image_palette(solid((255, 255, 255)), k=3)
    assert (black["lightness"], white["lightness"]) == (0.0, 100.0)
    assert black["saturation"] == white["saturation"] == 0.0
    assert sum(black["hues"]) == sum(white["hues"]) == 0.0
    image = np.concatenate([solid((0, 0, 0)), solid((255, 255, 255))], axis=0)
    assert palette.image_palette(image, k=2)["lightness"] == pytest.approx(50.0)


def test_fewer_distinct_colours_than_k() -> None:
    image = np.concatenate([solid(RED, 4, 4), solid(BLUE, 4, 12)], axis=1)
    colours = palette.image_palette(image, k=8)["colours"]
    assert [(c["hex"], c["share"]) for c in colours] == [("#0000ff", 0.75), ("#ff0000", 0.25)]


def test_group_palette_weights_images_equally() -> None:
    red = palette.image_palette(solid(RED), k=3)
    half = palette.image_palette(np.concatenate([solid(RED), solid(BLUE)], axis=1), k=3)
    group = palette.group_palette([red, half], k=2)
    assert [(c["hex"], c["share"]) for c in group["colours"]] == [("#ff0000", 0.75),
                                                                  ("#0000ff", 0.25)]
    assert group["images"] == 2
    assert group["lightness"] == pytest.approx((red["lightness"] + half["lightness"]) / 2,
                                              abs=1e-4)  # records keep 4 decimals
    assert group["hues"][1] == pytest.approx(0.75) and group["hues"][10] == pytest.approx(0.25)
    merged = palette.group_palette([red, half], k=1)["colours"]
    assert len(merged) == 1 and merged[0]["share"] == 1.0


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((4, 4, 4), np.uint8)])
def test_palette_refuses_non_rgb(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        palette.image_palette(bad, k=2)


# -- faces --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


def test_finds_the_astronauts_face(astronaut: np.ndarray) -> None:
    pytest.importorskip("cv2")
    result = faces.measure_faces(astronaut)
    assert result["count"] == 1
    face = result["faces"][0]
    # Hand-labelled face (eyebrows to chin, ear to ear) in the 512 × 512 image: x 175–275,
    # y 62–165. The detector reported x 177, y 67, w 93, h 93 with OpenCV 4.14.
    truth = (175, 62, 275, 165)
    box = (face["x"], face["y"], face["x"] + face["w"], face["y"] + face["h"])
    overlap = (max(0, min(box[2], truth[2]) - max(box[0], truth[0]))
               * max(0, min(box[3], truth[3]) - max(box[1], truth[1])))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (truth[2] - truth[0]) * (truth[3] - truth[1])
    assert overlap / (union - overlap) > 0.6
    # Cheek and forehead patches of this photo sampled by hand give ITA° 53–61 (L* 74–80,
    # b* 17–18): light to very light skin in studio light. The ellipse sample gave 56.6.
    assert 45 < face["ita"] < 65
    assert face["monk"] in (4, 5)  # the sample's L* ≈ 76 lies between Monk 4 (88) and 5 (78)
    assert face["pixels"] > 1000
    assert json.loads(json.dumps(result)) == result


def test_no_faces_in_blank_or_noise() -> None:
    pytest.importorskip("cv2")
    assert faces.measure_faces(solid((128, 128, 128), 256, 256)) == {"count": 0, "faces": []}
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert faces.detect_faces(noise) == []


@pytest.mark.parametrize(("L", "b", "angle"), [
    (50.0, 10.0, 0.0),
    (60.0, 10.0, 45.0),
    (40.0, 10.0, -45.0),
    (50.0 + 10 * math.sqrt(3), 10.0, 60.0),
    (70.0, 0.0, 90.0),
    (30.0, 0.0, -90.0),
    (60.0, -10.0, -45.0),  # arctan, not atan2: a negative b* flips the sign, not the quadrant
])
def test_ita_known_values(L: float, b: float, angle: float) -> None:
    assert faces.ita(L, b) == pytest.approx(angle)


def test_ita_categories() -> None:
    assert [faces.ita_category(a) for a in (60, 50, 30, 20, 0, -40)] == [
        "very light", "light", "intermediate", "tan", "brown", "dark"]


@pytest.mark.parametrize("number", range(1, 11))
def test_each_monk_swatch_is_its_own_nearest(number: int) -> None:
    swatch = srgb_to_lab(hex_to_srgb(faces.MONK[number - 1]))
    assert faces.monk(swatch) == number


def test_face_tone_of_a_uniform_swatch() -> None:
    image = solid(tuple(int(v) for v in hex_to_srgb(faces.MONK[6])), 40, 40)  # type: ignore[arg-type]
    tone = faces.face_tone(image, {"x": 0, "y": 0, "w": 40, "h": 40})
    lab = srgb_to_lab(hex_to_srgb(faces.MONK[6]))
    assert tone["monk"] == 7
    assert tone["lab"] == pytest.approx(lab, abs=0.01)
    assert tone["ita"] == pytest.approx(faces.ita(lab[0], lab[2]), abs=0.01)
    # The ellipse with semi-axes 0.35 w and 0.42 h covers π · 0.35 · 0.42 ≈ 46 % of the box.
    assert tone["pixels"] == pytest.approx(math.pi * 0.35 * 0.42 * 1600, rel=0.05)


def test_skin_sample_drops_clipped_pixels() -> None:
    crop = solid((255, 255, 255), 20, 20)
    crop[:, :10] = (0, 0, 0)
    assert len(faces.skin_pixels(crop)) == 0
    assert faces.face_tone(crop, {"x": 0, "y": 0, "w": 20, "h": 20})["ita"] is None


# -- diversity ----------------------------------------------------------------------------------
def blobs() -> np.ndarray:
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0.0, 0.0, 0.0]) + rng.normal(0, 0.05, (6, 4))
    b = np.array([0.0, 0.0, 1.0, 0.0]) + rng.normal(0, 0.05, (4, 4))
    return np.vstack([a, b])


def test_two_blobs_make_two_clusters_with_an_exemplar_each() -> None:
    labels = diversity.cluster(blobs(), n_clusters=2)
    assert labels.tolist() == [0] * 6 + [1] * 4
    chosen = diversity.exemplars(blobs(), labels)
    assert set(chosen) == {0, 1} and chosen[0] < 6 <= chosen[1]
    assert 1.8 < diversity.vendi_score(blobs()) < 2.3


def test_cluster_shares_per_group() -> None:
    labels = diversity.cluster(blobs(), n_clusters=2)
    groups = ["nurse"] * 5 + ["doctor"] * 5  # the doctors hold one row of cluster 0
    assert diversity.cluster_shares(labels, groups) == {
        "nurse": {0: 1.0, 1: 0.0}, "doctor": {0: 0.2, 1: 0.8}}


def test_identical_rows_are_one_cluster() -> None:
    rows = np.tile([0.2, 0.4, 0.1], (5, 1))
    assert diversity.cluster(rows, n_clusters=3).tolist() == [0] * 5
    assert diversity.cluster(rows[:1], n_clusters=3).tolist() == [0]
    assert diversity.exemplars(rows, np.zeros(5, np.intp)) == {0: 0}
