"""Lightning datamodules and datasets (layer 2): simulated training tiles."""

from stem2d.data.simulated import (
    SimulatedDataModule,
    SimulatedTileDataset,
    TileBases,
    make_split,
    simulate_bases,
)

__all__ = ["SimulatedDataModule", "SimulatedTileDataset", "TileBases", "make_split", "simulate_bases"]
