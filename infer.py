"""Find, classify and follow the defects of a movie; or classify tiles.

    python infer.py                                    # synthetic WS2 movie with truth, bundled weights
    python infer.py movie=path/to/movie.dm4            # your movie (.dm3/.dm4 .emd .tif .npy .npz .h5 .mp4 .gif, folder)
    python infer.py movie=... pixel_size_A=0.12 material=WS2 detector=grid
    python infer.py tiles=tiles.npy [ckpt_path=...]    # -> <run folder>/predictions.csv
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="infer")
def main(cfg: DictConfig) -> None:
    # Imported here, not at the top: --help, --cfg and config errors answer without torch.
    from stem2d.pipeline.cli import run_friendly

    def infer() -> None:
        from stem2d.pipeline.schema import INFER, validate

        validate(cfg, INFER, where="infer")  # bad values refused before torch is imported
        from stem2d.pipeline.infer import run_movie
        from stem2d.pipeline.tiles import run_tiles

        if cfg.get("tiles"):
            run_tiles(cfg)
        else:
            run_movie(cfg)

    # several movies (-m): a bad one is logged in its run folder and the others go on
    run_friendly(infer, raise_in_multirun=False)


if __name__ == "__main__":
    main()
