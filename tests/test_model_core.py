"""Model core beyond the golden fixtures: loading errors, key mapping round trip, tiny factory, prompting, views."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import FIXTURES
from PIL import Image
from safetensors.torch import load_file, save_file

from shirg_eval.model.config import CheckpointError
from shirg_eval.model.lavida import LavidaModel
from shirg_eval.model.loading import lavida_to_ours, ours_to_lavida
from shirg_eval.model.preprocess import ImageInputError, select_best_resolution, to_rgb
from shirg_eval.model.prompting import build_prompt_ids, decode_answer
from shirg_eval.model.sampler import GenerationConfig, generate, transfer_counts


def _copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_key_mapping_round_trip(tiny_model):
    for key in tiny_model.state_dict():
        assert lavida_to_ours(ours_to_lavida(key)) == key


def test_tiny_checkpoint_has_lavida_layout(tiny_checkpoint):
    keys = load_file(str(tiny_checkpoint / "model.safetensors")).keys()
    assert "model.transformer.wte.weight" in keys and "model.transformer.ff_out.weight" in keys
    assert "model.vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight" in keys
    assert not any("head" in k for k in keys)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "llava_llada" and config["image_aspect_ratio"] == "anyres"


def test_missing_key_is_named(tiny_checkpoint, tmp_path):
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    state = load_file(str(ckpt / "model.safetensors"))
    del state["model.transformer.blocks.1.up_proj.weight"]
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): model.transformer.blocks.1.up_proj.weight"):
        LavidaModel.from_pretrained(ckpt)


def test_wrong_shape_and_unexpected_key_are_named(tiny_checkpoint, tmp_path):
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    state = load_file(str(ckpt / "model.safetensors"))
    state["model.mm_projector.2.weight"] = torch.zeros(3, 3)
    state["model.transformer.extra.weight"] = torch.zeros(1)
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        LavidaModel.from_pretrained(ckpt)
    assert "model.mm_projector.2.weight: checkpoint (3, 3)" in str(err.value)
    assert "unexpected keys (1): model.transformer.extra.weight" in str(err.value)


def test_missing_and_pickle_checkpoints(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="no such directory"):
        LavidaModel.from_pretrained(tmp_path / "nope")
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="safetensors only"):
        LavidaModel.from_pretrained(ckpt)


def test_truncated_safetensors(tmp_path, tiny_checkpoint):
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        LavidaModel.from_pretrained(ckpt)


def test_sharded_checkpoint_loads_identically(tiny_checkpoint, tiny_model, tmp_path):
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    state = load_file(str(ckpt / "model.safetensors"))
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, names in shards.items():
        save_file({k: state[k] for k in names}, str(ckpt / name))
    (ckpt / "model.safetensors").unlink()
    index = {"weight_map": {k: name for name, names in shards.items() for k in names}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    sharded = LavidaModel.from_pretrained(ckpt, device="cpu", dtype="float32")
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), sharded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_real_config_without_siglip_file_uses_so400m(tmp_path):
    from shirg_eval.model.config import LavidaConfig

    raw = json.loads((FIXTURES / "set_A" / "checkpoint" / "config.json").read_text()) if FIXTURES.exists() else None
    if raw is None:
        pytest.skip("fixtures not present")
    (tmp_path / "config.json").write_text(json.dumps(raw))
    config = LavidaConfig.from_dir(tmp_path)
    assert config.vision.hidden_size == 1152 and config.vision.num_hidden_layers == 26
    raw["mm_vision_tower"] = "some/other-tower"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="siglip_vision_config.json"):
        LavidaConfig.from_dir(tmp_path)


def test_release_token_count(tiny_model):
    """Released anyres path: 196 base tokens + the unpadded 2x2 tile map with a newline per row.

    A square image gives the maximum, 196 + 28 * 29 = 1008 (LaViDa's "~980-1008"); other shapes lose the
    padded rows/columns: 4:3 keeps int(480 * 28 / 640) = 21 -> 22 rows, 4:5 keeps 22 columns.
    """
    def count(size):
        return tiny_model.visual_sequence(Image.new("RGB", size, (200, 30, 30))).n_tokens

    assert count((1000, 1000)) == 196 + 28 * 29
    assert count((640, 480)) == 196 + 22 * 29
    assert count((800, 1000)) == 196 + 28 * 23
    assert count((980, 1000)) == 196 + 28 * 29  # near-square documents: ~1008


def test_best_resolution_prefers_least_waste():
    pins = [[384, 768], [768, 384], [768, 768], [1152, 384], [384, 1152]]
    assert select_best_resolution((500, 375), pins) == (768, 384)
    assert select_best_resolution((300, 520), pins) == (384, 768)
    assert select_best_resolution((800, 700), pins) == (768, 768)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_odd_image_modes_become_rgb(mode, tiny_model):
    image = Image.new("RGB", (50, 40), (10, 200, 30)).convert(mode) if mode != "I;16" else Image.new("I;16", (50, 40), 4000)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (50, 40)
    assert tiny_model.visual_sequence(image).n_tokens > 0


def test_extreme_sizes_and_corrupt_bytes(tmp_path, tiny_model):
    assert tiny_model.visual_sequence(Image.new("RGB", (1, 1))).n_tokens > 0
    assert tiny_model.visual_sequence(Image.new("RGB", (10000, 50))).n_tokens > 0
    path = tmp_path / "broken.png"
    buf = tmp_path / "ok.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf)
    path.write_bytes(buf.read_bytes()[:60])
    with pytest.raises(ImageInputError, match="truncated or corrupt"):
        to_rgb(Image.open(path))


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (60, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.info["exif"] = exif.tobytes()
    rotated = to_rgb(Image.open(_save_with_exif(image, exif)))
    assert rotated.size == (20, 60)


def _save_with_exif(image, exif):
    import io

    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif.tobytes())
    buf.seek(0)
    return buf


def test_prompt_layout(tiny_tokenizer):
    ids = build_prompt_ids(tiny_tokenizer, "How many bars?")[0].tolist()
    assert ids[0] == tiny_tokenizer.bos_token_id and ids.count(tiny_tokenizer.bos_token_id) == 1
    assert ids.count(-200) == 1
    text = tiny_tokenizer.decode([i for i in ids if i >= 0])
    assert "<|start_header_id|>user<|end_header_id|>\n\n\nHow many bars?<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "You are a helpful language and vision assistant." in text


def test_decode_stops_at_eot(tiny_tokenizer):
    eot = tiny_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    hello = tiny_tokenizer("red bar", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([hello + [eot] + hello])
    assert decode_answer(tiny_tokenizer, ids) == "red bar"


def test_transfer_counts():
    assert transfer_counts(8, 3) == [3, 3, 2]
    assert transfer_counts(8, 4, "shift") == [1, 1, 2, 4]
    for n, steps in [(8, 8), (16, 5), (3, 7), (32, 30)]:
        for schedule in (None, "shift", "cosine"):
            counts = transfer_counts(n, steps, schedule)
            assert sum(counts) == n and all(c >= 0 for c in counts)


def test_generation_config_errors():
    with pytest.raises(ValueError, match="multiple of block_length"):
        GenerationConfig(gen_length=10, block_length=4).resolved()
    with pytest.raises(ValueError, match="schedule"):
        GenerationConfig(schedule="linear").resolved()


def test_prefix_cache_is_reused_not_grown(tiny_model, tiny_tokenizer):
    """Prefix-DLM encodes the prompt once: one extra forward, and the cache never keeps answer positions.

    (With and without the cache the answers legitimately differ: in Prefix-DLM the prompt does not attend to
    the answer. Each path is checked against the reference in test_fidelity.py.)
    """
    image = Image.new("RGB", (320, 240), (250, 250, 250))
    embeds = tiny_model.embed_prompt(build_prompt_ids(tiny_tokenizer, "What is shown?"),
                                     tiny_model.visual_sequence(image).embeds)
    on = generate(tiny_model, embeds, GenerationConfig(gen_length=16, block_length=8, prefix_cache=True))
    off = generate(tiny_model, embeds, GenerationConfig(gen_length=16, block_length=8, prefix_cache=False))
    assert on.n_forward == off.n_forward + 1 == 17
    assert on.prefix_cache_bytes > 0 and off.prefix_cache_bytes == 0


def test_too_long_prompt_is_a_clear_error(tiny_model):
    embeds = torch.zeros(1, 4090, tiny_model.config.d_model)
    with pytest.raises(ValueError, match="exceeds the model's 4096-position context"):
        generate(tiny_model, embeds, GenerationConfig(gen_length=16))


def test_stage_clock_records_cuda_events_on_the_model_device(monkeypatch):
    # No GPU needed: fake events that remember the stream they were recorded on. With the model on cuda:1
    # while cuda:0 is current, an Event.record() without a stream would time cuda:0's stream instead.
    from shirg_eval.model import sampler

    recorded = []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing

        def record(self, stream=None):
            recorded.append(stream)

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream of", str(device)))
    clock = sampler.StageClock(torch.device("cuda", 1))
    clock.mark()
    clock.mark()
    assert recorded == [("stream of", "cuda:1")] * 2
