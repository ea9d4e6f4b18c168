"""Lightning datamodules and datasets (layer 2): simulated training tiles."""

from stem2d.data.simulated import (
    Neighbours,
    SimulatedDataModule,
    SimulatedTileDataset,
    TileBases,
    make_split,
    simulate_bases,
)

__all__ = ["Neighbours", "SimulatedDataModule", "SimulatedTileDataset", "TileBases", "make_split", "simulate_bases"]
