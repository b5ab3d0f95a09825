"""tinyllm: tiny GPT-style language models to train on a laptop in minutes, then look inside.

import tinyllm
run = tinyllm.load("runs/shakespeare")          # a trained run directory
print(run.complete("to be or not", max_new_tokens=100, temperature=0.8, seed=0))

model = tinyllm.GPT(tinyllm.GPTConfig(vocab_size=65, n_layer=2, n_embd=64))
"""

__version__ = "0.1.0"

from .errors import TinyLLMError  # noqa: E402
from .inference import Run, load  # noqa: E402
from .model import GPT, GPTConfig  # noqa: E402
from .runs import train  # noqa: E402

__all__ = ["GPT", "GPTConfig", "Run", "TinyLLMError", "load", "train", "__version__"]
