"""shirg-leaderboard on the hand-made fixtures in tests/data/results/roadmap (see make_results_fixtures.py).

Hand-derived numbers (10 docs per task):
  chartqa_200 relaxed accuracy: lavida 6/10 = 60.0, shirg_fixed 8/10 = 80.0, pool_k 5/10 = 50.0
    paired deltas: shirg_fixed gains docs 6,7 -> +20.0; pool_k loses 1,3,5 and gains 6,8 -> -10.0
  docvqa_200 ANLS: lavida 6.0/10 = 60.0, shirg_fixed 8.0/10 = 80.0 (delta +20.0), pool_k not run -> missing
  per task (pool_k: chartqa only): latency p50 (chartqa's warm-up doc excluded) 100 / 150 / 80 ms -> ratios
  1.00x / 1.50x / 0.80x; peak memory 1.50 GB CPU RSS / 1.75 GB GPU alloc / 1.25 GB CPU RSS; visual tokens
  980 / 1216 / 768 -> token ratios 1.00 / 1216/980 = 1.24 / 768/980 = 0.78 (none matched)
The bracketed intervals are the seeded (seed 0) bootstrap's output, frozen here; their properties are tested in
test_bootstrap.py.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from shirg_eval.cli import leaderboard as lbm
from shirg_eval.report import table
from shirg_eval.report.efficiency import latencies
from shirg_eval.report.render import render
from shirg_eval.report.results import load_task_runs, scalar

DATA = Path(__file__).parent / "data" / "results" / "roadmap"
STAMP = "20250101_120000"

EXPECTED_MARKDOWN = """\
| variant     | lora                 | settings   | chartqa_200 tokens   | chartqa_200 relaxed acc %   | chartqa_200 CIDEr   | chartqa_200 tokens ×base   | chartqa_200 Δ vs base   | chartqa_200 ΔCIDEr    | chartqa_200 p50 ms   | chartqa_200 latency ×base   | chartqa_200 peak mem   | docvqa_200 tokens   | docvqa_200 ANLS %   | docvqa_200 CIDEr   | docvqa_200 tokens ×base   | docvqa_200 Δ vs base   | docvqa_200 ΔCIDEr    | docvqa_200 p50 ms   | docvqa_200 latency ×base   | docvqa_200 peak mem   |
|:------------|:---------------------|:-----------|:---------------------|:----------------------------|:--------------------|:---------------------------|:------------------------|:----------------------|:---------------------|:----------------------------|:-----------------------|:--------------------|:--------------------|:-------------------|:--------------------------|:-----------------------|:---------------------|:--------------------|:---------------------------|:----------------------|
| lavida      | none                 | default    | 980                  | 60.0 [30.0, 90.0]           | 150.0               | (baseline)                 | (baseline)              | (baseline)            | 100.0                | 1.00×                       | 1.50 GB (CPU RSS)      | 980                 | 60.0 [35.0, 85.0]   | 242.4              | (baseline)                | (baseline)             | (baseline)           | 100.0               | 1.00×                      | 1.50 GB (CPU RSS)     |
| shirg_fixed | runs/lora_r32/latest | default    | 1216                 | 80.0 [50.0, 100.0]          | 200.0               | 1.24×                      | +20.0 [+0.0, +50.0]     | +50.0 [+0.0, +125.0]  | 150.0                | 1.50×                       | 1.75 GB (GPU alloc)    | 1216                | 80.0 [55.0, 100.0]  | 300.0              | 1.24×                     | +20.0 [+5.0, +35.0]    | +57.6 [+0.0, +123.1] | 150.0               | 1.50×                      | 1.75 GB (GPU alloc)   |
| pool_k      | none                 | default    | 768                  | 50.0 [20.0, 80.0]           | 125.0               | 0.78×                      | -10.0 [-50.0, +30.0]    | -25.0 [-125.0, +75.0] | 80.0                 | 0.80×                       | 1.25 GB (CPU RSS)      | —                   | —                   | —                  | —                         | —                      | —                    | —                   | —                          | —                     |

Note: documents per task: chartqa_200 n=10, docvqa_200 n=10; all rows: dtype=float32, pretrained=/models/tiny-lavida; 95% CIs: percentile bootstrap over documents (2000 resamples, seed 0); Δ = run − baseline lavida, paired bootstrap over the same document ids; CIDEr Δ recomputes corpus CIDEr-D per resample (200 resamples); tokens ×base = ratio of the mean visual-token counts, "matched budget" only when they are equal; every column is per task: visual tokens = mean over all the task's documents (warm-up included); p50 = median per-document latency in ms without the task's warm-up document; latency ×base = the same median ratio over the documents timed in both rows; CIDEr ×100; peak mem = max over the task's samples; GPU alloc = CUDA max allocated per sample, CPU RSS = process peak RSS (cumulative over the process's tasks).
"""


@pytest.fixture(scope="module")
def board() -> table.Leaderboard:
    return table.build_leaderboard(load_task_runs([DATA]), baseline="lavida")


def test_markdown_exact(board: table.Leaderboard) -> None:
    assert render(board, "markdown") == EXPECTED_MARKDOWN


def test_cli_markdown_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert lbm.main([str(DATA), "--baseline", "lavida"]) == 0
    assert capsys.readouterr().out == EXPECTED_MARKDOWN


def test_csv_values(board: table.Leaderboard, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lb.csv"
    assert lbm.main([str(DATA), "--baseline", "lavida", "--format", "csv", "--output", str(out)]) == 0
    assert "percentile bootstrap" in capsys.readouterr().err  # the footnote goes to stderr for CSV
    lines = out.read_text().splitlines()
    assert lines[0].startswith("label,variant,lora,settings,base,chartqa_200.visual_tokens,chartqa_200.relaxed_overall,")
    # missing cells are empty, never 0
    assert lines[3].startswith('pool_k,pool_k,,,"pretrained=/models/tiny-lavida,dtype=float32",768.0,50.0,')
    assert lines[3].endswith(",0.8,1.25,cpu_peak_rss" + "," * 20)  # chartqa n_forward, then docvqa's 19 empty
    df = pd.read_csv(io.StringIO(out.read_text()))
    assert list(df["variant"]) == ["lavida", "shirg_fixed", "pool_k"]
    assert list(df["chartqa_200.relaxed_overall"]) == [60.0, 80.0, 50.0]
    assert list(df["chartqa_200.delta"]) == [0.0, 20.0, -10.0]
    assert df["docvqa_200.anls"].tolist()[:2] == [60.0, 80.0] and pd.isna(df["docvqa_200.anls"][2])
    assert df["docvqa_200.delta"].tolist()[1] == 20.0
    for t in ("chartqa_200", "docvqa_200"):
        assert list(df[f"{t}.latency_p50_ms"][:2]) == [100.0, 150.0]
        assert list(df[f"{t}.latency_ratio"][:2]) == [1.0, 1.5]
        assert list(df[f"{t}.peak_mem_kind"][:2]) == ["cpu_peak_rss", "cuda_max_allocated"]
        assert list(df[f"{t}.visual_tokens"][:2]) == [980.0, 1216.0]
        assert list(df[f"{t}.tokens_ratio"][:2]) == [1.0, pytest.approx(1216 / 980, abs=1e-4)]
    assert df["chartqa_200.latency_p50_ms"][2] == 80.0 and df["chartqa_200.latency_ratio"][2] == 0.8
    assert pd.isna(df["docvqa_200.latency_p50_ms"][2]) and pd.isna(df["docvqa_200.visual_tokens"][2])
    assert list(df["chartqa_200.matched_budget"]) == [True, False, False]
    assert df["chartqa_200.n_forward"].isna().all()  # these runs predate n_forward: no forwards column shown
    assert "chartqa_200 forwards" not in board.display.columns


def test_latex_exact_rows(board: table.Leaderboard) -> None:
    tex = render(board, "latex").splitlines()
    assert tex[0] == r"\begin{tabular}{" + "l" * 21 + "}"
    rows = [" ".join(line.split()) for line in tex if line.rstrip().endswith(r"\\")]
    assert rows[0].startswith(
        r"variant & lora & settings & chartqa\_200 tokens & chartqa\_200 relaxed acc \% & chartqa\_200 CIDEr & "
        r"chartqa\_200 tokens $\times$base & chartqa\_200 $\Delta$ vs base"
    )
    assert rows[1] == (
        r"lavida & none & default & 980 & 60.0 [30.0, 90.0] & 150.0 & (baseline) & (baseline) & (baseline) & 100.0 & "
        r"1.00$\times$ & 1.50 GB (CPU RSS) & 980 & 60.0 [35.0, 85.0] & 242.4 & (baseline) & (baseline) & (baseline) & "
        r"100.0 & 1.00$\times$ & 1.50 GB (CPU RSS) \\"
    )
    assert rows[3] == (
        r"pool\_k & none & default & 768 & 50.0 [20.0, 80.0] & 125.0 & 0.78$\times$ & -10.0 [-50.0, +30.0] & "
        r"-25.0 [-125.0, +75.0] & 80.0 & 0.80$\times$ & 1.25 GB (CPU RSS) & " + " & ".join(["--"] * 9) + r" \\"
    )
    assert tex[-1].startswith(r"Note: documents per task: chartqa\_200 n=10") and r"95\% CIs" in tex[-1]


def test_html_exact_rows(board: table.Leaderboard) -> None:
    html = render(board, "html")
    rows = [[c.strip() for c in r.split("</td><td>")] for r in html.split("<tr><td>")[1:]]
    rows = [[c.replace("</td></tr>", "").split("\n")[0].strip() for c in r] for r in rows]
    assert rows[1] == [
        "shirg_fixed",
        "runs/lora_r32/latest",
        "default",
        "1216",
        "80.0 [50.0, 100.0]",
        "200.0",
        "1.24×",
        "+20.0 [+0.0, +50.0]",
        "+50.0 [+0.0, +125.0]",
        "150.0",
        "1.50×",
        "1.75 GB (GPU alloc)",
        "1216",
        "80.0 [55.0, 100.0]",
        "300.0",
        "1.24×",
        "+20.0 [+5.0, +35.0]",
        "+57.6 [+0.0, +123.1]",
        "150.0",
        "1.50×",
        "1.75 GB (GPU alloc)",
    ]
    assert rows[2][12:] == ["—"] * 9
    assert "<p>Note: documents per task" in html


def test_no_baseline_means_no_delta_columns() -> None:
    lb = table.build_leaderboard(load_task_runs([DATA]), n_boot=200)
    assert not any("Δ" in c or "×base" in c for c in lb.display.columns)
    assert "Δ" not in lb.footnote


def test_cider_matches_pycocoevalcap_directly(board: table.Leaderboard) -> None:
    from pycocoevalcap.cider.cider import Cider

    rows = [
        json.loads(x)
        for x in (DATA / "lavida/models__tiny-lavida" / f"{STAMP}_samples_docvqa_200.jsonl").open()
    ]
    from shirg_eval.metrics.ptb_tokenizer import ptb_tokenize as tok  # the tokenisation pycocoevalcap runs

    score, _ = Cider().compute_score(
        {i: [tok(r["target"])] for i, r in enumerate(rows)},
        {i: [tok(r["filtered_resps"])] for i, r in enumerate(rows)},
    )
    assert board.raw["docvqa_200.cider"][0] == pytest.approx(100 * score)


def test_baseline_with_lora_and_unknown_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    lb = table.build_leaderboard(
        load_task_runs([DATA]), baseline="shirg_fixed@runs/lora_r32/latest", n_boot=100
    )
    assert lb.baseline == "shirg_fixed@runs/lora_r32/latest"
    assert lb.raw["chartqa_200.delta"].tolist() == [-20.0, 0.0, -30.0]
    assert lbm.main([str(DATA), "--baseline", "random_k"]) == 2
    assert "baseline 'random_k' matches no row" in capsys.readouterr().err


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "runs"
    shutil.copytree(DATA, dst)
    return dst


def test_newest_duplicate_wins(tmp_path: Path) -> None:
    runs = _copy(tmp_path)
    folder = runs / "lavida" / "models__tiny-lavida"
    older = "20241231_090000"
    for f in folder.iterdir():
        data = f.read_text()
        if f.name.endswith("_results.json"):
            d = json.loads(data)
            d["results"]["chartqa_200"]["relaxed_overall,none"] = 0.1
            data = json.dumps(d)
        else:
            data = data.replace('"relaxed_overall": 1.0', '"relaxed_overall": 0.0')
        (folder / f.name.replace(STAMP, older)).write_text(data)
    log = io.StringIO()
    runs_loaded = load_task_runs([runs], log=log)
    lav = [r for r in runs_loaded if r.variant == "lavida" and r.task == "chartqa_200"]
    assert len(lav) == 1 and lav[0].stamp == STAMP
    assert (
        "lavida {pretrained=/models/tiny-lavida,dtype=float32} / chartqa_200 appears twice; using the newest"
        in log.getvalue()
        and older in log.getvalue()
    )


def test_infrastructure_model_args_do_not_split_rows() -> None:
    from shirg_eval.report.results import identity_of
    from shirg_eval.report.rows import RowKey

    for extra in ("", ",device=cuda,journal=/j,pictures=0,allow_failures=true,allow_base_mismatch=true"):
        results = {"config": {"model": "shirg_fixed", "model_args": f"pretrained=/m,k=512,lora=/a{extra}"}}
        key = RowKey.of(identity_of(results, {}))
        assert (key.variant, key.lora, key.settings, key.base) == ("shirg_fixed", "/a", "k=512", "pretrained=/m")


def test_different_document_sets_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _copy(tmp_path)
    samples = runs / "pool_k" / "models__tiny-lavida" / f"{STAMP}_samples_chartqa_200.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join(lines[:-1]) + "\n")  # pool_k lost one document
    assert lbm.main([str(runs), "--baseline", "lavida"]) == 2
    err = capsys.readouterr().err
    assert "refusing to compare pool_k (chartqa_200) with lavida (chartqa_200)" in err
    assert "10 vs 9 ids; 1 only in lavida (chartqa_200), 0 only in pool_k (chartqa_200)" in err


def test_results_without_samples_use_aggregates(tmp_path: Path) -> None:
    runs = _copy(tmp_path)
    for f in (runs / "pool_k").rglob("*.jsonl"):
        f.unlink()
    lb = table.build_leaderboard(load_task_runs([runs]), baseline="lavida", n_boot=200)
    row = lb.display.iloc[2]
    assert row["chartqa_200 relaxed acc %"].startswith("50.0 [") and row[
        "chartqa_200 relaxed acc %"
    ].endswith("]*")
    assert row["chartqa_200 Δ vs base"] == "—"  # no samples, no paired delta
    assert row["chartqa_200 CIDEr"] == "—"  # aggregated cider is null in the fixture: missing, not 0
    assert "normal approximation" in lb.footnote


def test_tolerant_scalars_and_warmup() -> None:
    assert scalar({"score": 1}) == 1.0 and scalar(True) == 1.0
    assert all(scalar(v) != scalar(v) for v in (None, "N/A", {"a": 1, "b": 2}))  # NaN
    lav = [r for r in load_task_runs([DATA]) if r.variant == "lavida"]
    lat = latencies(lav)
    assert len(lat) == 19 and 5000.0 not in lat  # the warm-up sample is left out
    for r in lav:  # all warm-up -> all kept
        r.samples = [dict(s, warmup=True) for s in r.samples or []]
    assert len(latencies(lav)) == 20


def test_plots_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    runs = _copy(tmp_path)
    plt.imsave(runs / "shirg_fixed" / "selection_doc000.png", np.random.default_rng(0).random((16, 16, 3)))
    plots, rep = tmp_path / "plots", tmp_path / "report"
    assert (
        lbm.main(
            [
                str(runs),
                "--baseline",
                "lavida",
                "--plots",
                str(plots),
                "--report",
                str(rep),
                "--n-boot",
                "200",
                "--output",
                str(tmp_path / "lb.md"),
            ]
        )
        == 0
    )
    names = {p.name for p in plots.iterdir()}
    for stem in (
        "accuracy_vs_latency_chartqa_200",
        "accuracy_vs_latency_docvqa_200",
        "accuracy_vs_tokens_chartqa_200",
        "peak_memory",
        "selection_gallery",
    ):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    md = (rep / "report.md").read_text()
    assert "![peak_memory](peak_memory.png)" in md and (rep / "peak_memory.png").exists()
    assert '"lora_sha256"' in md and '"model_args": "pretrained=/models/tiny-lavida,device=cpu,k=768"' in md
    assert (
        lbm.main(
            [
                str(DATA),
                "--report",
                str(tmp_path / "h"),
                "--report-format",
                "html",
                "--n-boot",
                "100",
                "--output",
                str(tmp_path / "x.md"),
            ]
        )
        == 0
    )
    html = (tmp_path / "h" / "report.html").read_text()
    assert "data:image/png;base64," in html and "lmms_eval_version" in html
    assert "selection gallery skipped" in capsys.readouterr().err


def test_forwards_column_from_the_samples() -> None:
    """Runs that record n_forward (every run since threshold decoding) show its per-task mean."""
    runs = load_task_runs([DATA])
    for run in runs:
        for i, row in enumerate(run.samples or []):
            row["n_forward"] = 33 if run.key.variant == "lavida" else 10 + 2 * (i % 2)
    board = table.build_leaderboard(runs, baseline="lavida")
    shown = dict(zip(board.display["variant"], board.display["chartqa_200 forwards"], strict=True))
    assert shown["lavida"] == "33.0" and shown["pool_k"] == "11.0"
    assert "forwards = mean LM forward passes per answer" in board.footnote


def test_batch_size_is_part_of_a_rows_identity() -> None:
    from shirg_eval.report.results import identity_of
    from shirg_eval.report.rows import RowKey

    def key(meta: dict) -> RowKey:
        return RowKey.of(identity_of(results, meta))

    results = {"config": {"model": "shirg_fixed", "model_args": "pretrained=/m,k=512"}}
    meta = {"variant": "shirg_fixed", "dtype": "float32"}
    one = key({**meta, "batch_size": 1})
    assert one == key(meta)  # batch 1 is the row of runs from before batching
    eight = key({**meta, "batch_size": 8})
    assert eight != one and eight.base.endswith("batch_size=8")
