"""Hydra sweeper ``hydra/sweeper: stem2d_optuna``: Optuna ask-and-tell over Hydra jobs.

Every trial is an ordinary Hydra job launched through the configured launcher (own folder
``${hydra.sweep.dir}/${hydra.job.num}`` with ``job.num == trial number``, own overrides). The
logic lives in :mod:`stem2d.sweeper`; this module only adapts it to Hydra and is imported by
Hydra's plugin scan in every run, so it imports nothing heavy at module level.
"""

# No ``from __future__ import annotations``: Hydra's plugin scan executes this module before
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class Stem2dOptunaSweeperConf:
    """``hydra.sweeper`` keys (documented in ``conf/hparams_search/cam_optuna.yaml``)."""

    _target_: str = "hydra_plugins.stem2d_optuna_sweeper.stem2d_optuna_sweeper.Stem2dOptunaSweeper"
    _recursive_: bool = False  # sampler/pruner are built by the sweeper (seed offset, jobs)
    n_trials: int = 20
    n_jobs: int = 1
    direction: str = "maximize"
    study_name: str = "${hydra.job.name}"
    storage: str = "sqlite:///${hydra.sweep.dir}/optuna.db"
    sampler: Any = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 1234}
    )
    pruner: Any = None
    params: Dict[str, Any] = field(default_factory=dict)
    max_failure_rate: float = 0.25


ConfigStore.instance().store(
    group="hydra/sweeper", name="stem2d_optuna", node=Stem2dOptunaSweeperConf, provider="stem2d"
)


class Stem2dOptunaSweeper(Sweeper):
    """Runs ``n_trials`` more trials of an Optuna study, ``n_jobs`` per launcher call."""

    def __init__(
        self,
        *,
        n_trials: int,
        n_jobs: int,
        direction: str,
        study_name: str,
        storage: str,
        sampler: Optional[DictConfig],
        pruner: Optional[DictConfig],
        params: Optional[DictConfig],
        max_failure_rate: float,
    ) -> None:
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.direction = direction
        self.study_name = study_name
        self.storage = storage
        self.sampler_cfg = _plain(sampler)
        self.pruner_cfg = _plain(pruner)
        self.params = _plain(params) or {}
        self.max_failure_rate = max_failure_rate
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> None:
        from stem2d.sweeper import (
            SweepFailedError,
            TrialLink,
            build_pruner,
            build_sampler,
            open_study,
            parse_search_space,
            resolve_storage_url,
            run_trials,
        )

        assert self.config is not None and self.launcher is not None
        space = parse_search_space(self.params, arguments=arguments)
        storage_url = resolve_storage_url(self.storage)
        study = open_study(
            study_name=self.study_name,
            storage_url=storage_url,
            direction=self.direction,
            pruner=build_pruner(self.pruner_cfg),
        )
        n_before = len(study.get_trials(deepcopy=False))
        study.sampler = build_sampler(self.sampler_cfg, seed_offset=n_before)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info(
            "Optuna study %r in %s: %d trials so far, %d to add (%s %s); search space %s",
            study.study_name, storage_url, n_before, self.n_trials, self.direction,
            type(study.sampler).__name__, space.distributions,
        )

        def link_overrides(number: int) -> List[str]:
            return TrialLink(study.study_name, storage_url, number, self.pruner_cfg).overrides()

        try:
            run_trials(
                study,
                space,
                n_trials=self.n_trials,
                batch_size=self.n_jobs,
                launch=self._launch,
                max_failure_rate=self.max_failure_rate,
                link_overrides=link_overrides,
            )
        except SweepFailedError:
            self._write_outputs(study, sweep_dir, storage_url)
            raise
        self._write_outputs(study, sweep_dir, storage_url)

    def _launch(self, overrides: Sequence[Sequence[str]], first_job_idx: int) -> list:
        from stem2d.sweeper import outcome_from_result

        assert self.launcher is not None
        self.validate_batch_is_legal(overrides)  # composition errors stop the sweep early
        returns = self.launcher.launch(overrides, initial_job_idx=first_job_idx)
        return [_outcome(ret, outcome_from_result) for ret in returns]

    @staticmethod
    def _write_outputs(study: Any, sweep_dir: Path, storage_url: str) -> None:
        from stem2d.sweeper import save_plots, study_results, write_results

        path = write_results(study, sweep_dir, storage_url=storage_url)
        save_plots(study, sweep_dir)
        res = study_results(study, storage_url=storage_url)
        best = "no completed trial yet" if res["best_trial"] is None else (
            f"best value {res['best_value']:.6g} at trial {res['best_trial']} with {res['best_params']}"
        )
        log.info("Study %r %s: %s; written to %s", res["study_name"], res["n_trials"], best, path)


def _outcome(ret: JobReturn, classify: Any) -> Any:
    failed = ret.status != JobStatus.COMPLETED
    # ``JobReturn.return_value`` re-raises a failed job's exception (and prints to stderr);
    # the stored value is read directly so the sweep can record the trial and go on.
    result = ret._return_value
    outcome = classify(failed=failed, result=result)
    if failed and isinstance(result, BaseException) and outcome.state.name == "FAIL":
        folder = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
        log.warning("the trial job in %s raised:", folder or ret.working_dir, exc_info=result)
    return outcome


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
