"""The phantom ultrasound simulator: a seeded breath-hold cine standing in for clinical data.

Modules, from the probe down: :mod:`fan` (sector geometry), :mod:`anatomy` (liver, vessels,
diaphragm, ribs), :mod:`speckle`, :mod:`render` (one B-mode frame), :mod:`motion` (breathing
with holds), :mod:`episodes` (probe-shift and rib hard negatives), :mod:`nuisance`
(label-preserving gain/jitter/artefacts), :mod:`phase` (phase classes for training),
:mod:`cine` (the params and the generated cine), :mod:`generate` (rendering the whole cine)
and :mod:`write` (the files the team's notebook read).
"""

from echoseek.phantom.cine import Phantom, PhantomParams
from echoseek.phantom.generate import generate_phantom
from echoseek.phantom.write import write_phantom

__all__ = ["Phantom", "PhantomParams", "generate_phantom", "write_phantom"]
