"""sweep.plan: -S settings expanded as `dvc exp run --queue` expands them, or sampled."""

from __future__ import annotations

import math

import pytest

from sweep.plan import SweepError, make_plan

PARAMS = {"train": {"dropout": 0.3, "hidden_units": [512], "learning_rate": 0.001, "epochs": 15}}
COMMIT = "a" * 40


def test_a_grid_is_every_combination_in_dvcs_order_named_after_the_sweep() -> None:
    plan = make_plan(
        ["train.dropout=0.2,0.3", "train.hidden_units=[256],[512]", "train.epochs=3"],
        PARAMS,
        COMMIT,
        name="grid",
    )
    assert [(t.name, t.overrides) for t in plan.trials] == [
        ("grid-1", ("train.dropout=0.2", "train.hidden_units=[256]", "train.epochs=3")),
        ("grid-2", ("train.dropout=0.2", "train.hidden_units=[512]", "train.epochs=3")),
        ("grid-3", ("train.dropout=0.3", "train.hidden_units=[256]", "train.epochs=3")),
        ("grid-4", ("train.dropout=0.3", "train.hidden_units=[512]", "train.epochs=3")),
    ]
    assert plan.swept_keys == ("train.dropout", "train.hidden_units")
    assert plan.trials[0].message("grid") == (
        "sweep grid: train.dropout=0.2 train.hidden_units=[256] train.epochs=3"
    )


def test_the_grid_agrees_with_dvcs_own_expansion() -> None:
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    settings = ["train.learning_rate=choice(0.001,0.01)", "train.epochs=range(2,5)"]
    expected = [tuple(s["params.yaml"]) for s in get_hydra_sweeps(to_path_overrides(settings))]
    assert [t.overrides for t in make_plan(settings, PARAMS, COMMIT).trials] == expected
    assert len(expected) == 6


def test_the_default_name_follows_the_commit_and_the_grid() -> None:
    settings = ["train.dropout=0.2,0.3"]
    first = make_plan(settings, PARAMS, COMMIT).name
    assert first == make_plan(settings, PARAMS, COMMIT).name, "the same sweep resumes"
    assert first.startswith("sweep-") and len(first) == len("sweep-") + 7
    assert make_plan(settings, PARAMS, "b" * 40).name != first
    assert make_plan(["train.dropout=0.2,0.4"], PARAMS, COMMIT).name != first


def test_a_random_search_draws_distinct_combinations_again_with_the_same_seed() -> None:
    settings = ["train.dropout=0.1,0.2,0.3", "train.epochs=2,3,4"]
    plan = make_plan(settings, PARAMS, COMMIT, samples=4, seed=7)
    combos = [t.overrides for t in plan.trials]
    assert len(set(combos)) == 4
    grid = {t.overrides for t in make_plan(settings, PARAMS, COMMIT).trials}
    assert set(combos) <= grid
    again = make_plan(settings, PARAMS, COMMIT, samples=4, seed=7)
    assert combos == [t.overrides for t in again.trials]
    others = [
        [t.overrides for t in make_plan(settings, PARAMS, COMMIT, samples=4, seed=s).trials]
        for s in range(8)
    ]
    assert len({tuple(o) for o in others}) > 1, "the seed changes the draw"


def test_a_random_search_draws_from_intervals_log_ones_on_a_log_scale() -> None:
    plan = make_plan(
        ["train.learning_rate=tag(log, interval(1e-4, 1e-2))", "train.dropout=interval(0, 0.5)"],
        PARAMS,
        COMMIT,
        samples=200,
        seed=1,
    )
    rates = [float(t.overrides[0].split("=")[1]) for t in plan.trials]
    drops = [float(t.overrides[1].split("=")[1]) for t in plan.trials]
    assert all(1e-4 <= r <= 1e-2 for r in rates) and all(0 <= d <= 0.5 for d in drops)
    below = sum(r < 1e-3 for r in rates)  # log-uniform: half the draws below the geometric mean
    assert 70 < below < 130, below
    assert math.isclose(sorted(drops)[100], 0.25, abs_tol=0.07)


@pytest.mark.parametrize(
    ("settings", "options", "message"),
    [
        ([], {}, "no params to sweep: give at least one -S"),
        (["train.dropot=0.1,0.2"], {}, "-S train.dropot: params.yaml has no key train.dropot"),
        (["train.dropout.x=1"], {}, "params.yaml has no key train.dropout.x"),
        (["other.yaml:train.dropout=0.1"], {}, "the pipeline's params are in params.yaml"),
        (["train.dropout=choice(0.1"], {}, "-S: cannot read the settings"),
        (["train.dropout=interval(0, 0.5)"], {}, "interval(...) has no grid; add --samples N"),
        (["train.dropout=0.1,0.2"], {"samples": 3}, "the grid has 2 combinations"),
        (["train.dropout=0.1,0.2"], {"samples": 0}, "--samples 0: expected at least 1"),
        (
            ["train.learning_rate=tag(log, interval(0, 1))"],
            {"samples": 2},
            "a log interval needs a start above 0",
        ),
        (["train.dropout=0.1,0.2"], {"name": "no/slashes"}, "sweep name 'no/slashes': expected"),
        (["train.dropout=0.1,0.2"], {"name": "-dash"}, "a letter or digit first"),
    ],
)
def test_a_sweep_that_cannot_start_says_why_in_one_line(settings, options, message) -> None:
    with pytest.raises(SweepError, match=None) as raised:
        make_plan(settings, PARAMS, COMMIT, **options)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
