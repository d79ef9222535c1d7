"""Colour conversions, vectorised over the last axis: sRGB <-> linear <-> XYZ (D65) <-> CIELAB.

Conventions: sRGB is uint8 (0..255) or float (0..1); linear RGB and XYZ are floats with Y = 1 for
white; CIELAB has L* in 0..100. Formulas are those of IEC 61966-2-1 (sRGB) and CIE 15 (CIELAB).
The reference white is the sRGB matrix applied to (1, 1, 1), so sRGB white is exactly
L* = 100, a* = b* = 0 (the rounded published D65 white would leave a* ≈ 0.0005).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

Float = NDArray[np.float64]

# Linear sRGB -> XYZ (D65), IEC 61966-2-1 as tabulated by Lindbloom (7 decimals).
SRGB_TO_XYZ: Float = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
XYZ_TO_SRGB: Float = np.linalg.inv(SRGB_TO_XYZ).astype(np.float64)
WHITE_D65: Float = SRGB_TO_XYZ @ np.ones(3)  # (0.95047, 1.0000001, 1.088852)

_DELTA = 6.0 / 29.0  # CIE 15: the knee between the cube root and the linear segment of f(t)


def to_unit(rgb: ArrayLike) -> Float:
    """sRGB as floats in 0..1: uint8 is divided by 255, floats pass through.

    Other integer types raise TypeError: a uint16 or int image would be read as 0..255 wrongly.
    """
    array = np.asarray(rgb)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float64)
    raise TypeError(f"sRGB must be uint8 (0..255) or float (0..1), got {array.dtype}")


def to_uint8(rgb: ArrayLike) -> NDArray[np.uint8]:
    """Float sRGB (0..1) as uint8, clipped to the gamut and rounded to the nearest level."""
    return np.rint(np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def srgb_to_linear(rgb: ArrayLike) -> Float:
    """Undo the sRGB transfer curve (uint8 or float 0..1 in, linear 0..1 out)."""
    c = to_unit(rgb)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: ArrayLike) -> Float:
    """Apply the sRGB transfer curve; out-of-gamut values are clipped to 0..1 first."""
    c = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)


def linear_to_xyz(linear: ArrayLike) -> Float:
    """Linear sRGB -> CIE XYZ (D65, Y = 1 for white)."""
    return np.asarray(linear, dtype=np.float64) @ SRGB_TO_XYZ.T


def xyz_to_linear(xyz: ArrayLike) -> Float:
    """CIE XYZ (D65) -> linear sRGB (not clipped: out-of-gamut colours stay visible)."""
    return np.asarray(xyz, dtype=np.float64) @ XYZ_TO_SRGB.T


def _f(t: Float) -> Float:
    return np.where(t > _DELTA**3, np.cbrt(t), t / (3 * _DELTA**2) + 4.0 / 29.0)


def _f_inv(t: Float) -> Float:
    return np.where(t > _DELTA, t**3, 3 * _DELTA**2 * (t - 4.0 / 29.0))


def xyz_to_lab(xyz: ArrayLike) -> Float:
    """CIE XYZ -> CIELAB relative to WHITE_D65."""
    fx, fy, fz = np.moveaxis(_f(np.asarray(xyz, dtype=np.float64) / WHITE_D65), -1, 0)
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_xyz(lab: ArrayLike) -> Float:
    """CIELAB -> CIE XYZ relative to WHITE_D65."""
    L, a, b = np.moveaxis(np.asarray(lab, dtype=np.float64), -1, 0)
    fy = (L + 16.0) / 116.0
    f = np.stack([fy + a / 500.0, fy, fy - b / 200.0], axis=-1)
    return _f_inv(f) * WHITE_D65


def srgb_to_lab(rgb: ArrayLike) -> Float:
    """sRGB (uint8 or float 0..1) -> CIELAB."""
    return xyz_to_lab(linear_to_xyz(srgb_to_linear(rgb)))


def lab_to_srgb(lab: ArrayLike) -> Float:
    """CIELAB -> float sRGB 0..1, clipped to the gamut."""
    return linear_to_srgb(xyz_to_linear(lab_to_xyz(lab)))


def lab_to_hex(lab: ArrayLike) -> str:
    """One CIELAB colour as '#rrggbb' (clipped to the sRGB gamut)."""
    r, g, b = to_uint8(lab_to_srgb(lab)).reshape(3)
    return f"#{r:02x}{g:02x}{b:02x}"


def hex_to_srgb(code: str) -> NDArray[np.uint8]:
    """'#rrggbb' -> uint8 array of shape (3,); raises ValueError on anything else."""
    digits = code.removeprefix("#")
    if len(digits) != 6:
        raise ValueError(f"colour must be '#rrggbb', got {code!r}")
    return np.array([int(digits[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.uint8)


def chroma(lab: ArrayLike) -> Float:
    """CIELAB chroma C*ab = sqrt(a*² + b*²)."""
    lab = np.asarray(lab, dtype=np.float64)
    return np.hypot(lab[..., 1], lab[..., 2])


def hue_angle(lab: ArrayLike) -> Float:
    """CIELAB hue angle h_ab in degrees, 0 <= h < 360 (0 = +a* red, 90 = +b* yellow)."""
    lab = np.asarray(lab, dtype=np.float64)
    return np.mod(np.degrees(np.arctan2(lab[..., 2], lab[..., 1])), 360.0)


def delta_e76(lab1: ArrayLike, lab2: ArrayLike) -> Float:
    """CIE 1976 colour difference ΔE*ab: the Euclidean distance in CIELAB (broadcasts)."""
    diff = np.asarray(lab1, dtype=np.float64) - np.asarray(lab2, dtype=np.float64)
    return np.sqrt(np.sum(diff**2, axis=-1))
