"""Imported only by the forkserver of tests/faults/test_fault_kills.py (kill_child.PRELOAD): the one-time work
every child would otherwise repeat (transformers' lazy config / processor modules, the tiny model's config and
processor, matplotlib's fonts), done once before the fork. Nothing here starts a JAX backend: a process that
has one must not fork."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from transformers import AutoConfig  # noqa: E402

from jax_pruning.demo import ASSETS  # noqa: E402
from jax_pruning.processing import Processor  # noqa: E402
from models.config import load_config  # noqa: E402

load_config(ASSETS / "tiny_llava_next")
AutoConfig.for_model("llama")
Processor.from_folder(ASSETS / "tiny_llava_next")
_fig, _ax = plt.subplots()
_ax.plot([0, 1], [0, 1], label="x")
_ax.legend()
_fig.savefig(io.BytesIO(), format="png")
plt.close(_fig)
