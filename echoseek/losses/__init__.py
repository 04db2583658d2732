"""echoseek.losses: one loss per file, each a small ``nn.Module`` stating its formula."""

from echoseek.losses.barlow import BarlowTwinsLoss
from echoseek.losses.byol import BYOLLoss
from echoseek.losses.distributed import GatherLoss, GlobalBarlowTwinsLoss, GlobalNTXentLoss
from echoseek.losses.fastap import FastAPLoss
from echoseek.losses.instdisc import NCELoss
from echoseek.losses.ntxent import NTXentLoss
from echoseek.losses.simsiam import SimSiamLoss

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "FastAPLoss",
    "GatherLoss",
    "GlobalBarlowTwinsLoss",
    "GlobalNTXentLoss",
    "NCELoss",
    "NTXentLoss",
    "SimSiamLoss",
]
