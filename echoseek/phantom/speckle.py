"""Fully developed ultrasound speckle, decorrelating over time, and scanner log compression.

Speckle model (Wagner et al., "Statistics of speckle in ultrasound B-scans", IEEE Trans.
Sonics Ultrason. 30(3), 1983; Burckhardt, IEEE Trans. Sonics Ultrason. 25(1), 1978): many
sub-resolution scatterers per resolution cell give a complex field ``C = h * s``, the point
spread function ``h`` convolved with circular complex Gaussian scatterers ``s``. Its envelope
``|C|`` is Rayleigh distributed (point SNR mean/std = 1.91).

The RF pulse is a Gaussian-modulated sinusoid ``exp(-z^2 / 2 s_z^2) cos(2 pi f0 z)`` with a
Gaussian beam profile ``exp(-x^2 / 2 s_x^2)`` across beams. Scanners demodulate to baseband
(IQ) before envelope detection; the carrier only multiplies the scatterers by a unit phase
``exp(-2 pi i f0 z)``, which leaves circular white noise white, so the baseband field made with
the Gaussian envelope ``h(z, x) = exp(-z^2 / 2 s_z^2 - x^2 / 2 s_x^2)`` has exactly the speckle
of the RF model and, being low-pass, can be interpolated when tissue moves.

Frame to frame, out-of-plane motion and tissue deformation partially renew the scatterers; we
use a first-order autoregressive field ``s_t = rho s_{t-1} + sqrt(1 - rho^2) w_t`` with fresh
white ``w_t``, so that by linearity ``C_t = rho C_{t-1} + sqrt(1 - rho^2) (h * w_t)`` and the
complex correlation between frames ``k`` apart is ``rho^k``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

# Grey level of a region of unit echogenicity (the liver) after log compression, like a scanner
# whose gain is set so that parenchyma sits a little below mid-grey.
UNIT_ECHO_GREY = 110.0


def gaussian_transfer(
    shape: tuple[int, int], axial_sigma: float, lateral_sigma: float
) -> np.ndarray:
    """Frequency response of the baseband Gaussian PSF, scaled so that ``E|h * w|^2 = 1``.

    ``H(f_z, f_x) = exp(-2 pi^2 (s_z^2 f_z^2 + s_x^2 f_x^2))`` on the FFT grid of ``shape``
    (circular convolution; the field is stationary, so the wrap-around is harmless).
    """
    fz = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    transfer = np.exp(-2 * math.pi**2 * ((axial_sigma * fz) ** 2 + (lateral_sigma * fx) ** 2))
    return (transfer / np.sqrt(np.mean(transfer**2))).astype(np.float32)


def complex_white(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Circular complex Gaussian white noise with ``E|w|^2 = 1``."""
    real = rng.standard_normal(shape, dtype=np.float32)
    imag = rng.standard_normal(shape, dtype=np.float32)
    return (real + 1j * imag) * np.float32(1 / math.sqrt(2))


def filtered_speckle(transfer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One independent speckle field ``h * w`` (complex, unit mean power)."""
    return np.fft.ifft2(transfer * np.fft.fft2(complex_white(transfer.shape, rng)))


def speckle_fields(
    transfer: np.ndarray, correlation: float, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Endless AR(1) sequence ``C_t = rho C_{t-1} + sqrt(1 - rho^2) (h * w_t)`` of fields."""
    innovation = math.sqrt(1.0 - correlation**2)
    field = filtered_speckle(transfer, rng)
    while True:
        yield field
        field = correlation * field + innovation * filtered_speckle(transfer, rng)


def shift_rows(field: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Sample every column of ``field`` at fractional row positions ``rows`` (linear).

    ``rows`` has the output's shape (R, B); column ``b`` of the output reads column ``b`` of
    ``field``. Used to move speckle with tissue along the beams.
    """
    top = np.clip(np.floor(rows).astype(np.intp), 0, field.shape[0] - 2)
    frac = rows - top
    upper = np.take_along_axis(field, top, axis=0)
    lower = np.take_along_axis(field, top + 1, axis=0)
    return upper * (1 - frac) + lower * frac


def reference_level(dynamic_range_db: float) -> float:
    """Envelope amplitude shown white: unit echogenicity's mean envelope maps to ``UNIT_ECHO_GREY``.

    The mean Rayleigh envelope of unit power is ``sqrt(pi) / 2``.
    """
    below_white_db = dynamic_range_db * (1 - UNIT_ECHO_GREY / 255.0)
    return math.sqrt(math.pi) / 2 * 10 ** (below_white_db / 20)


def log_compress(envelope: np.ndarray, reference: float, dynamic_range_db: float) -> np.ndarray:
    """Scanner display mapping ``g = 255 (1 + 20 log10(e / e_ref) / DR)``, clipped to [0, 255].

    ``e_ref`` is shown white; everything ``DR`` dB or more below it is black. Returns floats;
    round after scan conversion.
    """
    db = 20 * np.log10(np.maximum(envelope, 1e-12) / reference)
    return np.clip(255.0 * (1.0 + db / dynamic_range_db), 0.0, 255.0)
