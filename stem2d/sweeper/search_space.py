"""Search spaces written in Hydra's sweep-override syntax, turned into Optuna distributions.

The syntax is the one of the released ``hydra-optuna-sweeper`` and of Hydra's own sweeps, with
Hydra's meaning of ``range`` (stop excluded, like Python):

=====================================  ==================================================
``interval(1e-4, 1e-1)``               float, uniform on [low, high]
``tag(log, interval(1e-4, 1e-1))``     float, log-uniform
``tag(int, interval(1, 10))``          int, uniform on [low, high] (``log`` may be added)
``range(16, 129, 16)``                 int, 16, 32, ..., 128 (a float range is categorical)
``choice(sgd, adam)`` or ``sgd,adam``  categorical (also config-group options)
``0.1`` (any plain value)              fixed: passed unchanged to every trial
=====================================  ==================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    Glob,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

__all__ = ["SearchSpace", "format_override_value", "parse_search_space"]

_INTERVAL_TAGS = frozenset({"log", "int"})


@dataclass(frozen=True)
class SearchSpace:
    """What Optuna samples and what every trial receives unchanged.

    Attributes
    ----------
    distributions : dict[str, BaseDistribution]
        Optuna distribution per parameter; the name is the override key (``+`` prefix kept).
    choice_texts : dict[str, dict[Any, str]]
        For categorical parameters: the override text of each choice (so lists, quoted
        strings and config-group options reach the job exactly as written).
    fixed : list[str]
        Override strings without a sweep, passed verbatim to every trial.
    """

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    choice_texts: dict[str, dict[Any, str]] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def overrides_for(self, params: Mapping[str, Any]) -> list[str]:
        """Override strings for one trial: its sampled ``params`` then the fixed overrides."""
        sampled = []
        for name, value in params.items():
            texts = self.choice_texts.get(name)
            text = texts[value] if texts is not None else format_override_value(value)
            sampled.append(f"{name}={text}")
        return sampled + list(self.fixed)


def parse_search_space(
    params: Mapping[str, Any] | None, *, arguments: Iterable[str] = ()
) -> SearchSpace:
    """Build a :class:`SearchSpace` from the ``params`` mapping and command-line overrides.

    Parameters
    ----------
    params : mapping of str to str or None
        ``{override key: sweep expression}``, e.g. ``{"model.optimizer.lr":
        "tag(log, interval(1e-3, 0.3))"}`` (the ``hydra.sweeper.params`` node).
    arguments : iterable of str, keyword-only
        Command-line overrides (``hydra.overrides.task``); they come after ``params`` and win
        on the same key, so ``lr=0.01`` on the command line fixes a searched parameter.

    Returns
    -------
    SearchSpace

    Raises
    ------
    ValueError
        If an expression cannot be parsed or describes an empty/invalid range; the message
        names the key and the expression.

    Examples
    --------
    >>> space = parse_search_space({"lr": "tag(log, interval(1e-3, 0.3))"}, arguments=["a=1"])
    >>> space.distributions["lr"].log, space.fixed
    (True, ['a=1'])
    """
    lines = [f"{key}={_param_text(key, value)}" for key, value in (params or {}).items()]
    lines += list(arguments)
    distributions: dict[str, BaseDistribution] = {}
    choice_texts: dict[str, dict[Any, str]] = {}
    fixed: dict[str, str] = {}
    parser = OverridesParser.create()
    for line in lines:
        try:
            override = parser.parse_override(line)
        except Exception as err:  # Hydra raises OverrideParseException with its own context
            raise ValueError(f"cannot parse search-space override {line!r}: {err}") from err
        key = override.get_key_element()
        distributions.pop(key, None)
        choice_texts.pop(key, None)
        fixed.pop(key, None)
        if not override.is_sweep_override():
            fixed[key] = line
            continue
        distributions[key], texts = _distribution(override, line)
        if texts is not None:
            choice_texts[key] = texts
    return SearchSpace(distributions, choice_texts, list(fixed.values()))


def format_override_value(value: Any) -> str:
    """Hydra override text for a plain Python value (None, bool, number, str, list, dict).

    >>> format_override_value({"_target_": "a.B", "n": 3, "f": None})
    "{_target_:'a.B',n:3,f:null}"
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return "'" + _escape_quoted(value) + "'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_override_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} of type {type(value).__name__} as an override")


def _escape_quoted(text: str) -> str:
    """Hydra quoted-string escaping: only backslashes before a quote or at the end are doubled."""
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    return re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)


def _param_text(key: str, value: Any) -> str:
    """A ``params`` entry is a sweep expression (str) or a plain YAML value to fix."""
    if isinstance(value, Mapping):
        raise ValueError(
            f"hydra.sweeper.params.{key} is a nested mapping; write one dotted key per "
            f"parameter, e.g. 'model.optimizer.lr: tag(log, interval(1e-3, 0.3))'"
        )
    return value if isinstance(value, str) else format_override_value(value)


def _distribution(override: Override, line: str) -> tuple[BaseDistribution, dict | None]:
    value = override.value()
    if isinstance(value, IntervalSweep):
        return _interval_distribution(value, line), None
    if isinstance(value, Glob):
        raise ValueError(f"glob() sweeps are not supported by the Optuna sweeper: {line!r}")
    if isinstance(value, RangeSweep) and not value.shuffle:
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values) and values and value.step > 0:
            return IntDistribution(values[0], values[-1], step=int(value.step)), None
    if isinstance(value, (ChoiceSweep, RangeSweep)):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        texts = list(override.sweep_string_iterator())
        if not choices:
            raise ValueError(f"empty choice/range in search-space override {line!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"repeated choices in search-space override {line!r}")
        return CategoricalDistribution(choices), dict(zip(choices, texts))
    raise ValueError(f"unsupported sweep in search-space override {line!r}")


def _interval_distribution(sweep: IntervalSweep, line: str) -> BaseDistribution:
    unknown = set(sweep.tags) - _INTERVAL_TAGS
    if unknown:
        raise ValueError(
            f"unknown tag(s) {sorted(unknown)} in {line!r}; interval() accepts {sorted(_INTERVAL_TAGS)}"
        )
    low, high, log = sweep.start, sweep.end, "log" in sweep.tags
    if not low < high:
        raise ValueError(f"interval low must be < high in {line!r} (got {low}, {high})")
    if log and low <= 0:
        raise ValueError(f"tag(log, ...) needs a positive low bound in {line!r} (got {low})")
    if "int" in sweep.tags:
        if low != int(low) or high != int(high):
            raise ValueError(f"tag(int, ...) needs integer bounds in {line!r} (got {low}, {high})")
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)
