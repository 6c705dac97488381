"""Regret plots: the bands are the summary's intervals; large sweeps stay legible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditrec import plots
from banditrec.results import mean_ci


def _results(n_policies: int, n_seeds: int = 3, steps: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for p in range(n_policies):
        for seed in range(n_seeds):
            regret = np.cumsum(rng.random(steps))
            for t in range(steps):
                rows.append({"policy": f"p{p}", "seed": seed, "step": 10 * (t + 1), "reward": 0.5, "regret": 0.1,
                             "cumulative_reward": 5.0 * (t + 1), "cumulative_regret": regret[t]})
    return pd.DataFrame(rows)


def test_the_band_at_the_last_step_is_the_summarys_interval():
    table = _results(1, n_seeds=4)
    x, mean, lo, hi = plots._band(table, "cumulative_regret")
    final = table[table["step"] == x[-1]]["cumulative_regret"].to_numpy()
    assert (mean[-1], lo[-1], hi[-1]) == pytest.approx(mean_ci(final), abs=1e-12)


def test_one_seed_has_no_interval_and_a_nan_is_not_averaged_away():
    # one seed drew (and summarised) a zero-width "95% CI"; a NaN seed was dropped from the band
    # while the legend and the summary counted it
    table = _results(1, n_seeds=1)
    _, mean, lo, hi = plots._band(table, "cumulative_regret")
    assert np.isnan(lo).all() and np.isnan(hi).all() and np.isfinite(mean).all()
    assert np.isnan(mean_ci(np.array([3.0]))[1:]).all()
    table = _results(1, n_seeds=3)
    table.loc[(table["seed"] == 1) & (table["step"] == 50), "cumulative_regret"] = np.nan
    _, mean, lo, _ = plots._band(table, "cumulative_regret")
    assert np.isnan(mean[-1]) and np.isnan(lo[-1]) and np.isfinite(mean[:-1]).all()


@pytest.mark.parametrize("n_policies", [3, 25, 60])
def test_every_policy_gets_its_own_colour_and_large_sweeps_are_drawn(tmp_path, n_policies):
    # colours cycled through ten (25 policies shared them two or three times) and the legend,
    # in a fixed strip, covered the plots
    import matplotlib.pyplot as plt

    colours = plots._colors(n_policies)
    assert len({tuple(np.round(plt.matplotlib.colors.to_rgba(c), 6)) for c in colours}) == n_policies
    written = plots.plot_results(_results(n_policies), tmp_path / "regret.png", formats=("png",))
    assert written == [tmp_path / "regret.png"] and written[0].stat().st_size > 0


def test_a_table_holding_a_trial_twice_is_refused(tmp_path):
    table = _results(2)
    with pytest.raises(ValueError, match=r"holds policy 'p0', seed 0, step 10 more than once"):
        plots.plot_results(pd.concat([table, table.iloc[:1]]), tmp_path / "regret.png")


def test_policies_named_like_missing_values_are_read_as_written(tmp_path):
    # pandas read "None", "NA", "null", "nan" and "N/A" as missing: `banditrec plot` dropped such a
    # policy, or refused two of them as "holds policy nan ... more than once"
    from banditrec.results import load_results, read_table

    names = ["None", "NA", "null", "nan", "N/A", "1"]
    table = _results(len(names))
    table["policy"] = table["policy"].map({f"p{i}": name for i, name in enumerate(names)})
    table.to_csv(tmp_path / "results.csv", index=False)
    loaded = load_results(tmp_path)
    assert loaded["policy"].unique().tolist() == names and loaded.groupby("policy").ngroups == len(names)
    assert plots.plot_results(loaded, tmp_path / "regret.png", formats=("png",)) == [tmp_path / "regret.png"]
    # a summary's blank cells (one seed's interval, an unset parameter) stay missing
    (tmp_path / "summary.csv").write_text("policy,n_seeds,regret_ci_low,param_alpha\nNA,1,,\nnull,2,0.5,1.0\n")
    summary = read_table(tmp_path / "summary.csv")
    assert summary["policy"].tolist() == ["NA", "null"] and summary["regret_ci_low"].isna().tolist() == [True, False]
    assert summary["param_alpha"].isna().tolist() == [True, False]


def test_a_results_file_that_is_not_a_run_folder_or_holds_text_is_named(tmp_path):
    # "README.md holds no results.csv: not a finished run folder" for a file; "unsupported operand
    # type(s) for /: 'str' and 'int'" for a column holding text
    from banditrec.results import load_results

    table = _results(1).astype({"cumulative_reward": object})
    table.loc[3, "cumulative_reward"] = "oops"
    path = tmp_path / "results.csv"
    table.to_csv(path, index=False)
    with pytest.raises(NotADirectoryError, match=r"results\.csv is a file, not a run folder"):
        load_results(path)
    with pytest.raises(ValueError, match=rf"^{path}: column 'cumulative_reward' must hold numbers, got 'oops' on line 5"):
        load_results(tmp_path)
    table.drop(columns=["step"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['step'\]: not a banditrec results table"):
        load_results(tmp_path)


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_a_run_of_one_step_and_a_point_between_nans_are_drawn(tmp_path, monkeypatch, n_seeds):
    # a curve of one point is a line of no length: a run with horizon = batch_size saved two
    # empty axes with only a legend
    import matplotlib.pyplot as plt

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig) or close(fig))
    plots.plot_results(_results(2, n_seeds=n_seeds, steps=1), tmp_path / "one.png", formats=("png",))
    gaps = _results(1, n_seeds=n_seeds)
    gaps.loc[gaps["step"].isin([30, 50]), "cumulative_regret"] = np.nan  # step 40 stands alone
    plots.plot_results(gaps, tmp_path / "gaps.png", formats=("png",))
    one, gap = (fig.axes[0] for fig in figures)
    for policy in range(2):
        dots = [line for line in one.lines if line.get_color() == f"C{policy}" and line.get_marker() not in ("None", "")]
        assert [tuple(line.get_xdata()) for line in dots] == [(10,)], f"policy p{policy} is not drawn"
    dots = [line for line in gap.lines if line.get_marker() not in ("None", "")]
    assert [tuple(line.get_xdata()) for line in dots] == [(40,)]
    from matplotlib.collections import LineCollection

    bars = [c for c in one.collections if isinstance(c, LineCollection)]
    assert len(bars) == (2 if n_seeds > 1 else 0)  # each policy's one-step interval, as a bar


def test_a_results_table_with_no_rows_is_named_not_plotted(tmp_path):
    # a header-only results.csv (a copy cut short) gave "banditrec: error: number sections must be
    # larger than 0." from matplotlib's legend
    from banditrec.results import load_results

    empty = _results(1).iloc[:0]
    empty.to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ValueError, match=r"results\.csv holds no rows, only its header; rerun the experiment"):
        load_results(tmp_path)
    with pytest.raises(ValueError, match="results table has no rows: nothing to plot"):
        plots.plot_results(empty, tmp_path / "regret.png")
