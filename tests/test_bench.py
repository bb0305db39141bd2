"""Cost-model arithmetic on hand-computable cases, and ``shirg-bench`` end to end on the tiny dims."""

from __future__ import annotations

import json

import pytest

from shirg_eval.bench import cost_model as cm
from shirg_eval.bench.cli import main


def test_linear_and_attention_counts():
    c = cm.linear_cost(n=10, d_in=3, d_out=4, elem_bytes=2)
    assert c.flops == 2 * 10 * 3 * 4
    assert c.bytes == (3 * 4 + 10 * (3 + 4)) * 2
    assert cm.linear_cost(10, 3, 4, 2, bias=True).flops == 2 * 10 * 3 * 4 + 10 * 4
    a = cm.attention_cost(n_q=5, n_kv=7, n_heads=2, head_dim=8, elem_bytes=2)
    assert a.flops == 4 * 5 * 7 * 2 * 8
    assert a.bytes == (2 * 5 * 16 + 2 * 7 * 16) * 2
    assert (c + a).flops == c.flops + a.flops and (3 * c).bytes == 3 * c.bytes
    hw = cm.Hardware("x", flops_per_s=100.0, bytes_per_s=10.0)
    assert cm.Cost(1000, 50).seconds(hw) == 10.0 and cm.Cost(100, 500).seconds(hw) == 50.0


def test_kv_bytes_at_real_dims():
    real = cm.DIMS["real"]
    # 2 (K and V) * 32 layers * 32 heads * 128 head_dim * tokens * 2 bytes (bf16) = 0.5 MiB per token
    assert cm.kv_cache_bytes(real.n_layers, real.n_heads, real.head_dim, 1, 2) == 2 * 32 * 32 * 128 * 2 == 2**19
    assert cm.kv_cache_bytes(32, 32, 128, 793, 2) == 793 * 2**19
    pred = cm.predict(real, cm.HARDWARE["h100"], text_tokens=64)
    assert pred["lavida_384"]["kv_bytes"]["model"] == (729 + 64) * 2**19
    int8, bf16 = pred["shirg_fixed"]["kv_bytes"]["int8"], pred["shirg_fixed"]["kv_bytes"]["bf16"]
    assert int8 == bf16 / 2 + 2 * 32 * 32 * 128 * 4 and int8 <= 0.55 * bf16


def test_stage_costs_by_hand():
    d = cm.BenchDims("t", d_model=8, n_heads=2, n_layers=1, mlp_hidden_size=16, vocab_size=10, vision_hidden=4,
                     vision_intermediate=8, vision_heads=1, vision_layers=1, patch=14)
    # LM pass, 3 queries over 5 keys, head over 2 positions (FLOPs only): q,k,v,o + attention + SwiGLU + head
    lm = cm.lm_cost(d, n_q=3, n_kv=5, n_logits=2)
    assert lm.flops == 4 * 2 * 3 * 8 * 8 + 4 * 3 * 5 * 8 + 3 * 2 * 3 * 8 * 16 + 2 * 2 * 8 * 10
    # SigLIP at 28 px: 4 patches; patch embed (588 -> 4) + 4 biased linears + attention + MLP
    n = 4
    lin = lambda i, o: 2 * n * i * o + n * o  # noqa: E731
    vis = cm.siglip_cost(d, resolution=28)
    assert vis.flops == lin(588, 4) + 4 * lin(4, 4) + 4 * n * n * 4 + lin(4, 8) + lin(8, 4)
    assert cm.projector_cost(d, n).flops == lin(4, 8) + lin(8, 8)
    # 672 px has (48/27)^2 = 3.16x the tokens of 384 px: vision cost grows faster (attention is quadratic)
    real = cm.DIMS["real"]
    r = cm.siglip_cost(real, 672).flops / cm.siglip_cost(real, 384).flops
    assert 2304 / 729 < r < (2304 / 729) ** 2


def test_predicted_ratios_and_cache():
    pred = cm.predict(cm.DIMS["real"], cm.HARDWARE["h100"])
    rat = cm.ratios(pred, "lavida_384")
    assert rat["lavida_384"]["latency"] == 1.0
    assert rat["lavida_672"]["latency"] > rat["shirg_fixed"]["latency"] > 1.0
    for p in pred.values():
        assert p["flops"]["step_nocache"] > p["flops"]["step_cached"]
        assert p["cache_speedup"] > 1.0


def test_bench_cli_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["--dims", "tiny", "--runs", "2", "--warmup", "1", "--variants", "lavida_384,shirg_fixed", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["dims"] == "tiny" and report["baseline"] == "lavida_384"
    assert set(report["variants"]) == {"lavida_384", "shirg_fixed"}
    for row in report["variants"].values():
        for key in ("preprocess_ms", "vision_ms", "projector_ms", "selection_ms", "embed_ms", "prefill_ms",
                    "denoise_ms", "step_ms", "latency_ms", "visual_tokens", "prefix_kv_bytes", "peak_memory",
                    "latency_ratio", "predicted_latency_ratio", "selection_share_of_vision"):
            assert key in row, key
        assert row["n_steps"] == 30
    v = report["variants"]
    assert v["lavida_384"]["visual_tokens"] == 729 and v["shirg_fixed"]["visual_tokens"] == 768 + 144
    assert v["lavida_384"]["latency_ratio"] == 1.0 and "cache_speedup" in v["shirg_fixed"]
    assert {t["status"] for t in report["targets"]} <= {"PASS", "MISS", "n/a"}
    kv = report["prefix_kv_bytes_by_dtype"]
    assert kv["int8"] <= 0.55 * kv["bf16"]
    text = capsys.readouterr().out
    assert "targets [tiny dims" in text and "PASS" in text


def test_model_only_and_real_refused_on_cpu(capsys):
    main(["--model-only"])
    assert "cost model at real dims" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="CUDA"):
        main(["--dims", "real", "--device", "cpu"])


@pytest.mark.slow
def test_harness_overhead_smoke():
    from shirg_eval.bench.harness_overhead import measure, report

    result = measure("lavida_384", n_docs=3, gen_length=8)
    assert result["docs"] == 2 and result["direct_ms_per_sample"] > 0 and result["harness_ms_per_sample"] > 0
    assert "harness overhead (lavida_384, 2 docs" in report(result)
