"""Counting the tokens of a rendered prompt: a model's own tokenizer, or the simulator's.

`TokenCounter` is all an expectation needs. `Tokenizer` adds the ids, for sending a prompt
rendered client-side to a raw completions endpoint; only a real vocabulary has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tokenizers import Tokenizer as _HFTokenizer

from traces.chat_template.errors import TokenizerLoadError

TOKENIZER_FILE = "tokenizer.json"


class TokenCounter(Protocol):
    """Counts tokens the way one server does."""

    @property
    def name(self) -> str:
        """What the counts come from (a file, or `sim`), for reports."""
        ...

    def count(self, text: str) -> int:
        """Tokens in `text`."""
        ...


class Tokenizer(TokenCounter, Protocol):
    """A counter with a vocabulary: it can also encode."""

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`."""
        ...


class HFTokenizer:
    """A `tokenizer.json` read with the `tokenizers` library.

    Encodes without adding special tokens: a chat template writes its own BOS and turn
    markers, and servers tokenize the rendered prompt that way (vLLM, SGLang, TGI), so the
    markers in the text are matched as added tokens instead.
    """

    def __init__(self, tokenizer: _HFTokenizer, name: str) -> None:
        """Wrap an already loaded tokenizer; `name` appears in reports."""
        self._tokenizer = tokenizer
        self._name = name

    @classmethod
    def load(cls, path: Path) -> HFTokenizer:
        """From a `tokenizer.json` file, or a model folder holding one."""
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise TokenizerLoadError(f"{file}: no such file")
        try:
            tokenizer = _HFTokenizer.from_file(str(file))
        except Exception as err:  # the Rust side raises plain Exception with serde's text
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TokenizerLoadError(f"{file}: not a tokenizers JSON file ({first})") from None
        return cls(tokenizer, str(file))

    @property
    def name(self) -> str:
        """The file the vocabulary came from."""
        return self._name

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, no special tokens added."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        """Number of token ids of `text`."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


class SimTokenCounter:
    """The simulator's stand-in tokenizer, which decides its `usage.prompt_tokens`.

    It has no vocabulary, hence no ids. Imported on first use: loading the simulator
    package brings its HTTP server along, which rendering a template never needs.
    """

    @property
    def name(self) -> str:
        """Always `sim`."""
        return "sim"

    def count(self, text: str) -> int:
        """Tokens in `text`, exactly as the simulator counts a prompt."""
        from traces.sim.tokenizer import count_tokens

        return count_tokens(text)
