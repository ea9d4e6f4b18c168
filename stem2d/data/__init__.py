"""Lightning datamodules and datasets (layer 2): simulated training tiles."""

from stem2d.data.simulated import (
    LazyTileBases,
    Neighbours,
    SimulatedDataModule,
    SimulatedTileDataset,
    TileBases,
    make_split,
    simulate_bases,
)

__all__ = ["LazyTileBases", "Neighbours", "SimulatedDataModule", "SimulatedTileDataset", "TileBases", "make_split", "simulate_bases"]
