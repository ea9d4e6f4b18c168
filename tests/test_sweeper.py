"""Optuna sweeper: search-space parsing, the ask/tell loop, results, pruning, and the Hydra plugin
driven through the real command line of the test app in tests/sweep_app."""

import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from stem2d.sweeper import (
    SweepFailedError,
    TrialLink,
    build_sampler,
    format_override_value,
    open_study,
    outcome_from_result,
    parse_search_space,
    reporter_from_cfg,
    resolve_storage_url,
    run_trials,
    save_plots,
    write_results,
)
from stem2d.sweeper.loop import _consecutive_groups

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "sweep_app" / "app.py"
PARSER = OverridesParser.create()
THRESHOLD = {"_target_": "optuna.pruners.ThresholdPruner", "lower": -10.0, "n_warmup_steps": 1}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _parsed(line):
    override = PARSER.parse_override(line)
    return override.get_key_element(), override.value()


# ---------------------------------------------------------------- search space (pure logic)
def test_search_space_distributions_and_fixed_values():
    space = parse_search_space(
        {"lr": "tag(log, interval(1e-3, 0.3))", "m": "interval(0.5, 0.99)", "bs": "tag(log, int, interval(16, 256))",
         "width": "range(16, 65, 16)", "opt": "choice(sgd, adam)", "epochs": 5},
        arguments=["m=0.9", "+extra=interval(0, 1)", "data=simulated"],
    )
    d = space.distributions
    assert d["lr"] == FloatDistribution(1e-3, 0.3, log=True)
    assert d["bs"] == IntDistribution(16, 256, log=True)
    assert d["width"] == IntDistribution(16, 64, step=16)  # Hydra range: stop excluded
    assert d["opt"] == CategoricalDistribution(["sgd", "adam"])
    assert d["+extra"] == FloatDistribution(0.0, 1.0)
    assert "m" not in d  # the command line fixes it
    assert space.fixed == ["epochs=5", "m=0.9", "data=simulated"]


def test_trial_overrides_parse_back_to_the_sampled_values():
    space = parse_search_space({"c": "choice('a b', [1, 2], 3, true)", "x": "interval(0, 1)", "n": "range(1, 5)"})
    for choice in space.distributions["c"].choices:
        params = {"c": choice, "x": 1e-5, "n": 3}
        parsed = dict(_parsed(line) for line in space.overrides_for(params))
        expected_c = [1, 2] if choice == "[1,2]" else choice
        assert parsed == {"c": expected_c, "x": 1e-5, "n": 3}


@pytest.mark.parametrize("value", [None, True, 0, -3, 2.5e-7, "sqlite:////tmp/a b/it's.db", "end\\", "x\\'y",
                                   {"_target_": "a.B", "n": [1, "two", None], "d": {"k": 0.5}}])
def test_format_override_value_round_trips(value):
    assert _parsed("k=" + format_override_value(value))[1] == value


@pytest.mark.parametrize("expr, words", [
    ("tag(lgo, interval(1, 2))", ["lgo", "lr"]), ("interval(2, 1)", ["low", "lr"]),
    ("tag(log, interval(0, 1))", ["positive", "lr"]), ("tag(int, interval(1.5, 4))", ["integer", "lr"]),
    ("glob(*)", ["glob", "lr"]), ("interval(1,", ["parse", "lr"]),
])
def test_bad_search_space_names_key_and_problem(expr, words):
    with pytest.raises(ValueError) as err:
        parse_search_space({"lr": expr})
    assert all(word in str(err.value) for word in words)
    with pytest.raises(ValueError, match="hydra.sweeper.params.model is a nested mapping"):
        parse_search_space({"model": {"lr": expr}})


def test_storage_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_url("sqlite:///sub/o.db") == f"sqlite:///{tmp_path}/sub/o.db"
    assert resolve_storage_url("journal://sub/o.log") == f"journal://{tmp_path}/sub/o.log"
    assert resolve_storage_url("journal:////abs/o.log") == "journal:///abs/o.log"
    assert resolve_storage_url("postgresql://u@h/db") == "postgresql://u@h/db"
    for bad in ("", None, "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="storage"):
            resolve_storage_url(bad)


# ---------------------------------------------------------------- ask/tell loop (pure logic)
@pytest.mark.parametrize("failed, result, state", [
    (False, 0.5, TrialState.COMPLETE), (False, 3, TrialState.COMPLETE), (False, float("nan"), TrialState.FAIL),
    (False, -float("inf"), TrialState.FAIL), (False, None, TrialState.FAIL), (False, "high", TrialState.FAIL),
    (True, RuntimeError("boom"), TrialState.FAIL), (True, optuna.TrialPruned("cut"), TrialState.PRUNED),
])
def test_outcome_classification(failed, result, state):
    assert outcome_from_result(failed=failed, result=result).state == state


def _quadratic_launch(calls, fail_numbers=()):
    """In-process launcher: parses each trial's overrides and scores -(x - 1)^2."""
    def launch(batch, first_idx):
        calls.append((first_idx, [list(o) for o in batch]))
        outcomes = []
        for overrides in batch:
            values = dict(_parsed(line) for line in overrides)
            number = values["++optuna.trial_number"]
            failed = number in fail_numbers
            result = RuntimeError("crash") if failed else -(values["x"] - 1.0) ** 2
            outcomes.append(outcome_from_result(failed=failed, result=result))
        return outcomes
    return launch


def _study(tmp_path, name="s"):
    return open_study(study_name=name, storage_url=f"journal://{tmp_path}/o.log", direction="maximize")


def _link(number):
    return TrialLink("s", "sqlite:////x.db", number).overrides()


def test_run_trials_tells_every_trial_and_job_index_is_trial_number(tmp_path):
    study, calls = _study(tmp_path), []
    space = parse_search_space({"x": "interval(-3, 3)"}, arguments=["fixed=1"])
    run_trials(study, space, n_trials=5, batch_size=2, launch=_quadratic_launch(calls),
               max_failure_rate=0.0, link_overrides=_link)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(5)) and [len(b) for _, b in calls] == [2, 2, 1]
    assert [first for first, _ in calls] == [0, 2, 4]
    assert all(t.state == TrialState.COMPLETE and t.value == pytest.approx(-(t.params["x"] - 1) ** 2) for t in trials)
    assert all("fixed=1" in o for _, batch in calls for o in batch)
    # a second run adds n_trials more to the same study
    run_trials(_study(tmp_path), space, n_trials=2, batch_size=2, launch=_quadratic_launch(calls),
               max_failure_rate=0.0, link_overrides=_link)
    assert len(_study(tmp_path).trials) == 7


def test_failures_are_told_and_the_budget_stops_the_run(tmp_path):
    study, space = _study(tmp_path), parse_search_space({"x": "interval(-3, 3)"})
    run_trials(study, space, n_trials=4, batch_size=1, launch=_quadratic_launch([], {1, 2}),
               max_failure_rate=0.5, link_overrides=_link)
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 2
    calls = []
    with pytest.raises(SweepFailedError, match="max_failure_rate=0.25") as err:
        run_trials(study, space, n_trials=4, batch_size=3, launch=_quadratic_launch(calls, {4, 5}),
                   max_failure_rate=0.25, link_overrides=_link)
    assert "trial 4: RuntimeError: crash" in str(err.value)
    assert [first for first, _ in calls] == [4]  # stopped after the first batch
    assert [t.state for t in study.trials[4:]] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]


def test_interrupted_batch_leaves_no_running_trials(tmp_path):
    study = _study(tmp_path)

    def launch(batch, first_idx):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, parse_search_space({"x": "interval(0, 1)"}), n_trials=3, batch_size=3, launch=launch,
                   max_failure_rate=0.0)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3


def test_consecutive_groups_split_where_another_worker_asked():
    trials = [optuna.trial.FixedTrial({}, number) for number in (3, 4, 6, 7, 9)]
    assert [[t.number for t in g] for g in _consecutive_groups(trials)] == [[3, 4], [6, 7], [9]]


def test_direction_must_match_existing_study(tmp_path):
    _study(tmp_path)
    with pytest.raises(ValueError, match="direction"):
        open_study(study_name="s", storage_url=f"journal://{tmp_path}/o.log", direction="minimize")


def test_sampler_seed_offset_changes_proposals_reproducibly():
    def proposals(offset):
        study = optuna.create_study(sampler=build_sampler({"_target_": "optuna.samplers.TPESampler", "seed": 7},
                                                          seed_offset=offset))
        return [study.ask({"x": FloatDistribution(0, 1)}).params["x"] for _ in range(3)]
    assert proposals(0) == proposals(0) and proposals(0) != proposals(3)


# ---------------------------------------------------------------- reporting, pruning, results
def test_link_round_trips_through_overrides_and_reporter_prunes(tmp_path):
    study = _study(tmp_path)
    trial = study.ask()
    link = TrialLink("s", resolve_storage_url(f"journal://{tmp_path}/o.log"), trial.number, THRESHOLD)
    cfg = OmegaConf.create()
    for line in link.overrides():
        key, value = _parsed(line)
        OmegaConf.update(cfg, key.lstrip("+"), value, force_add=True)
    assert TrialLink.from_cfg(cfg) == link and reporter_from_cfg(OmegaConf.create({"a": 1})) is None
    reporter = reporter_from_cfg(cfg)
    reporter.report(-20.0, step=0)  # warm-up step: never pruned
    with pytest.raises(optuna.TrialPruned):
        reporter.report(-11.0, step=1)
    assert study.trials[0].intermediate_values == {0: -20.0, 1: -11.0}
    with pytest.raises(ValueError, match="trial_number"):
        TrialLink.from_cfg(OmegaConf.create({"optuna": {"study_name": "s", "storage": "x"}}))


def test_lightning_callback_reports_each_epoch_and_prunes(tmp_path):
    import lightning.pytorch as pl
    import torch

    from stem2d.sweeper import pruning_callback_from_cfg

    class Falling(pl.LightningModule):  # val/score = -6, -8, -10, -12, ... (pruned below -10)
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.w * batch[0]).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val/score", -6.0 - 2.0 * self.current_epoch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    study = _study(tmp_path)
    trial = study.ask()
    link = TrialLink("s", resolve_storage_url(f"journal://{tmp_path}/o.log"), trial.number, THRESHOLD)
    cfg = OmegaConf.create({"optimized_metric": "val/score", "optuna": vars(link)})
    callback = pruning_callback_from_cfg(cfg)
    assert pruning_callback_from_cfg(OmegaConf.create({"optimized_metric": "m"})) is None
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 1)), batch_size=2)
    trainer = pl.Trainer(max_epochs=10, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(optuna.TrialPruned, match="step 3"):
        trainer.fit(Falling(), loader, loader)
    assert study.trials[0].intermediate_values == {0: -6.0, 1: -8.0, 2: -10.0, 3: -12.0}


def test_results_and_plots(tmp_path):
    study = _study(tmp_path)
    assert yaml.safe_load(write_results(study, tmp_path, storage_url="u").read_text())["best_value"] is None
    for x in (0.0, 2.0, 0.5):
        study.enqueue_trial({"x": x})
        trial = study.ask({"x": FloatDistribution(-3, 3)})
        study.tell(trial, -(trial.params["x"] - 1.0) ** 2)
    results = yaml.safe_load(write_results(study, tmp_path, storage_url="u").read_text())
    assert results["best_params"] == {"x": 0.5} and results["best_value"] == -0.25
    assert results["n_trials"] == {"complete": 3} and results["best_trial"] == 2
    assert sorted(p.name for p in save_plots(study, tmp_path)) == ["optimization_history.png",
                                                                   "param_importances.png"]


# ---------------------------------------------------------------- Hydra plugin and real command line
def test_plugin_is_discovered_by_hydra():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    assert "Stem2dOptunaSweeper" in names, "run `pip install -e .` so hydra_plugins/ is importable"


def test_project_sweep_config_composes_with_the_cam_search_space():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("sweep", return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("Stem2dOptunaSweeper") and sweeper.direction == "maximize"
    space = parse_search_space(OmegaConf.to_container(sweeper.params))
    assert space.distributions == {"model.optimizer.lr": FloatDistribution(1e-3, 0.3, log=True),
                                   "model.optimizer.momentum": FloatDistribution(0.5, 0.99)}
    assert all(OmegaConf.select(cfg, key) is not None for key in space.distributions)


def _sweep(sweep_dir, *overrides, check=True, wait=True):
    cmd = [sys.executable, str(APP), "-m", f"hydra.sweep.dir={sweep_dir}", *overrides]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _load(storage, name="quadratic"):
    return optuna.load_study(study_name=name, storage=storage).trials


@pytest.mark.slow  # a sweep in a subprocess (the default suite stays under 4 min on 2 cores)
def test_cli_sweep_end_to_end(tmp_path):
    _sweep(tmp_path, "hydra.sweeper.n_trials=2")
    trials = _load(f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:  # each trial ran the app with its own sampled overrides, in its own folder
        assert t.value == pytest.approx(-((t.params["x"] - 1) ** 2 + (t.params["y"] + 2) ** 2))
        assert len(t.intermediate_values) == 4
        job_overrides = yaml.safe_load((tmp_path / str(t.number) / ".hydra" / "overrides.yaml").read_text())
        assert f"++optuna.trial_number={t.number}" in job_overrides
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_value"] == max(t.value for t in trials)
    assert (tmp_path / "optimization_history.png").stat().st_size > 0


@pytest.mark.slow
def test_cli_second_run_extends_the_study_in_a_journal(tmp_path):
    storage = f"hydra.sweeper.storage=journal://{tmp_path}/study.log"
    _sweep(tmp_path / "a", storage, "hydra.sweeper.n_trials=2")
    _sweep(tmp_path / "b", storage, "hydra.sweeper.n_trials=2")
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))
    trials = _load(optuna.storages.JournalStorage(journal))
    assert [t.number for t in trials] == [0, 1, 2, 3] and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.is_dir()) == ["2", "3"]
    assert len({(t.params["x"], t.params["y"]) for t in trials}) == 4  # resumed run does not replay


@pytest.mark.slow
def test_cli_failing_trials_do_not_stop_the_sweep_until_the_budget(tmp_path):
    _sweep(tmp_path / "ok", "hydra.sweeper.n_trials=3", "fail_trials=[1]", "nan_trials=[2]",
           "hydra.sweeper.max_failure_rate=0.7")
    assert [t.state for t in _load(f"sqlite:///{tmp_path}/ok/optuna.db")] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    proc = _sweep(tmp_path / "stop", "hydra.sweeper.n_trials=3", "fail_trials=[0]", check=False)
    assert proc.returncode != 0 and "max_failure_rate" in proc.stderr
    assert [t.state for t in _load(f"sqlite:///{tmp_path}/stop/optuna.db")] == [TrialState.FAIL]
    assert (tmp_path / "stop" / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_cli_two_concurrent_processes_share_one_study(tmp_path):
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path}/shared.db"
    procs = [_sweep(tmp_path / w, storage, "hydra.sweeper.n_trials=3", f"hydra.sweeper.sampler.seed={seed}",
                    wait=False) for w, seed in (("a", 1), ("b", 2))]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    trials = _load(f"sqlite:///{tmp_path}/shared.db")
    assert sorted(t.number for t in trials) == list(range(6)) and all(t.state == TrialState.COMPLETE for t in trials)
    folders = [{int(p.name) for p in (tmp_path / w).iterdir() if p.is_dir()} for w in "ab"]
    assert folders[0].isdisjoint(folders[1]) and folders[0] | folders[1] == set(range(6))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_cli_pruned_trials_are_recorded_as_pruned(tmp_path, launcher):
    if launcher != "basic":
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    pruner = "hydra.sweeper.pruner=" + format_override_value(THRESHOLD)
    extra = [] if launcher == "basic" else ["hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2"]
    _sweep(tmp_path, "hydra.sweeper.n_trials=4", pruner, "hydra.sweeper.max_failure_rate=0.0", *extra)
    trials = _load(f"sqlite:///{tmp_path}/optuna.db")
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    for t in trials:  # pruned iff a reported value after warm-up fell below the threshold
        late = [v for step, v in t.intermediate_values.items() if step >= 1]
        assert (t.state == TrialState.PRUNED) == (min(late) < THRESHOLD["lower"])
        assert len(t.intermediate_values) == (2 if t.state == TrialState.PRUNED else 4)
        assert math.isfinite(t.value)


@pytest.mark.slow
def test_project_sweep_command_on_tiny_data(tmp_path):
    """`python sweep.py -m` itself: real training trials on tiny data, a study with their values."""
    tiny = ["data.n_bases_per_class=2", "data.n_val_bases_per_class=1", "data.n_train_samples=64",
            "data.n_val_samples=32", "data.batch_size=32", "data.num_workers=0", "trainer.max_epochs=2",
            "model.net.channels=[4,8]", "trainer.precision=32-true"]
    cmd = [sys.executable, str(ROOT / "sweep.py"), "-m", f"hydra.sweep.dir={tmp_path}",
           "hydra.sweeper.n_trials=2", f"paths.log_dir={tmp_path}/logs", *tiny]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = optuna.load_study(study_name="cam_optuna", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(0.0 <= t.value <= 1.0 for t in trials)
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_value"] == max(t.value for t in trials)
    assert (tmp_path / "0" / "metrics.json").is_file() and (tmp_path / "1" / "metrics.json").is_file()
