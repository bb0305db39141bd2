"""LLaVA-format conversation data (LCS-558K and friends) and a resumable, seeded distributed order.

Records: ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": "..."}]}``; the first human turn is the question, the first gpt turn the answer. A record
may also carry ``"shirg_question"``: the text that conditions the selectors' relevance, as the harness's tasks
declare it (``shirg_eval.query``), so that a task instruction in the human turn does not steer selection, and
``"shirg_gen_length"``: the answer canvas its task decodes, which the answer is padded to.
Malformed records and missing images are dropped when the file is indexed; images that fail to decode are
dropped when read. Both are counted, never raised.
"""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.reading import GEN_LENGTH_FIELD
from ..query import QUESTION_FIELD
from .config import ConfigError, DataConfig

IMAGE_TOKEN = "<image>"


@dataclass
class Sample:
    uid: str
    image_path: Path
    question: str
    answer: str
    query: str | None = None  # what selection is conditioned on (default: the question)
    gen_length: int | None = None  # the answer canvas its task decodes (``shirg_gen_length``): padded to it


@dataclass
class SkipStats:
    """Why records were not trained on. ``corrupt_ids`` is a set so epochs do not double-count."""

    malformed: int = 0
    missing_image: int = 0
    corrupt_ids: set[str] = field(default_factory=set)

    @property
    def corrupt_image(self) -> int:
        return len(self.corrupt_ids)

    def as_dict(self) -> dict[str, int]:
        return {"malformed": self.malformed, "missing_image": self.missing_image,
                "corrupt_image": self.corrupt_image}


def _turn(conversations: list[Any], who: tuple[str, ...]) -> str | None:
    for turn in conversations:
        if isinstance(turn, dict) and turn.get("from") in who and isinstance(turn.get("value"), str):
            return turn["value"]
    return None


def clean_question(text: str) -> str:
    """Drop the ``<image>`` tag (the prompt builder puts the image first, as LaViDa's template does)."""
    return "\n".join(line for line in text.replace(IMAGE_TOKEN, "").split("\n") if line.strip()).strip()


def parse_records(records: list[Any], image_folder: str | Path, stats: SkipStats) -> list[Sample]:
    folder = Path(image_folder)
    samples: list[Sample] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list) or not rec.get("image"):
            stats.malformed += 1
            continue
        question = _turn(rec["conversations"], ("human", "user"))
        answer = _turn(rec["conversations"], ("gpt", "assistant"))
        if question is None or answer is None or not answer.strip():
            stats.malformed += 1
            continue
        path = folder / str(rec["image"])
        if not path.is_file():
            stats.missing_image += 1
            continue
        query, gen_length = rec.get(QUESTION_FIELD), rec.get(GEN_LENGTH_FIELD)
        if gen_length is not None and (isinstance(gen_length, bool) or not isinstance(gen_length, int)
                                       or gen_length < 1):
            stats.malformed += 1
            continue
        samples.append(Sample(str(rec.get("id", i)), path, clean_question(question), answer.strip(),
                              query if isinstance(query, str) else None, gen_length))
    return samples


def load_training_data(data: DataConfig) -> ConversationDataset:
    """Index the training data, turning a missing, unparsable or empty file into a :class:`ConfigError` (the
    trainer does this before DeepSpeed starts, so a bad path is reported in seconds)."""
    if not Path(data.json).is_file():
        raise ConfigError(f"data.json {data.json} does not exist (a LLaVA-format conversation JSON)")
    if data.image_folder and not Path(data.image_folder).is_dir():
        raise ConfigError(f"data.image_folder {data.image_folder} does not exist (image paths in data.json are "
                          "read relative to it)")
    try:
        return ConversationDataset(data.json, data.image_folder or None)
    except (OSError, ValueError) as err:
        raise ConfigError(f"data.json: {err}") from err


class ConversationDataset(torch.utils.data.Dataset):
    """Index of usable samples; ``__getitem__`` returns (sample, PIL image) or (sample, None) if undecodable."""

    def __init__(self, json_path: str | Path, image_folder: str | Path | None = None):
        json_path = Path(json_path)
        if not json_path.is_file():
            raise FileNotFoundError(f"training data {json_path} does not exist")
        try:
            records = json.loads(json_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"training data {json_path} is not valid JSON: {err}") from None
        if not isinstance(records, list):
            raise ValueError(f"{json_path}: expected a JSON list of conversation records")
        self.stats = SkipStats()
        folder = Path(image_folder or json_path.parent)
        self.samples = parse_records(records, folder, self.stats)
        if not self.samples:
            raise ValueError(f"{json_path}: no usable records (malformed {self.stats.malformed}, missing_image "
                             f"{self.stats.missing_image}); image paths are read relative to data.image_folder "
                             f"({folder})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Sample, Any]:
        from PIL import Image

        sample = self.samples[index]
        try:
            with _strict_decoding(), Image.open(sample.image_path) as img:
                image = img.convert("RGB")  # forces a full decode: truncated files fail here, not later
        except Exception:  # noqa: BLE001 -- any decode failure means "skip this image"
            return sample, None
        return sample, image


@contextmanager
def _strict_decoding():
    """Truncated files must fail to decode: lmms-eval sets PIL's process-wide LOAD_TRUNCATED_IMAGES on import,
    which would turn a cut JPEG into a grey-filled training image that is never counted as skipped."""
    from PIL import ImageFile

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


class ResumableOrder:
    """Seeded per-epoch shuffle, split across ranks; micro-batch ``m`` is a pure function of (seed, m).

    The data position is just the global micro-batch counter: epoch = m // per_epoch, index = m % per_epoch.
    Resuming therefore skips consumed batches by arithmetic, without touching the images.
    """

    def __init__(self, n: int, micro_batch: int, rank: int, world: int, seed: int):
        self.n, self.micro_batch, self.rank, self.world, self.seed = n, micro_batch, rank, world, seed
        # Equal batch counts on every rank (collectives must line up); the epoch's remainder is dropped.
        self.per_epoch = n // (micro_batch * world)
        if self.per_epoch < 1:
            raise ValueError(f"{n} samples are fewer than one global micro-batch ({micro_batch} x {world} ranks)")
        self._epoch: int | None = None
        self._perm: list[int] = []

    def position(self, micro_step: int) -> tuple[int, int]:
        return divmod(micro_step, self.per_epoch)

    def indices_read(self, micro_steps: int) -> set[int]:
        """The distinct dataset indices of micro-batches ``0..micro_steps-1`` (what a resumed rank has read)."""
        read: set[int] = set()
        for m in range(micro_steps):
            if len(read) == self.n:
                break
            read.update(self.indices(m))
        return read

    def indices(self, micro_step: int) -> list[int]:
        epoch, index = self.position(micro_step)
        if epoch != self._epoch:
            perm = list(range(self.n))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(perm)
            self._perm = perm[self.rank:: self.world]  # DistributedSampler-style interleave
            self._epoch = epoch
        return self._perm[index * self.micro_batch:(index + 1) * self.micro_batch]


class OrderedBatches(torch.utils.data.IterableDataset):
    """Yields the micro-batches ``start..stop-1`` of a :class:`ResumableOrder` (DataLoader does the decoding)."""

    def __init__(self, dataset: ConversationDataset, order: ResumableOrder, start: int, stop: int):
        self.dataset, self.order, self.start, self.stop = dataset, order, start, stop

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        for m in range(self.start + wid, self.stop, workers):
            yield m, [self.dataset[i] for i in self.order.indices(m)]


def micro_batches(dataset: ConversationDataset, order: ResumableOrder, start: int, stop: int, num_workers: int = 0):
    """Iterate ``(micro_step, [(sample, image|None), ...])`` in order, decoding images in workers if asked."""
    loader = torch.utils.data.DataLoader(OrderedBatches(dataset, order, start, stop), batch_size=None,
                                         num_workers=num_workers) if num_workers else None
    if loader is None:
        for m in range(start, stop):
            yield m, [dataset[i] for i in order.indices(m)]
        return
    # Workers each produce every num_workers-th batch; DataLoader interleaves them back in order.
    yield from loader

