"""The research world: multi-hop lookups over a small corpus of linked markdown documents.

Every document is a file `<doc_id>.md` whose first line is `# Title`. Documents reference each
other with `[[Other Title]]`; following the references from a start document leads to a
terminal document whose first sentence holds the answer. The model only sees the corpus
through `search` and `open_document`, so each hop costs at least one tool round-trip.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traces.model import ToolErrorKind
from traces.tools.base import SuccessResult, ToolOutcome, argument_failure
from traces.tools.schema_check import ArgumentChecker

#: Names the task prompts may use as `{placeholders}`.
PROMPT_VARIABLES = frozenset({"document_count"})

SEARCH_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "search",
        "description": (
            "Search the article collection. Returns the best-matching articles (doc_id, title "
            "and a snippet); an exact title match ranks first."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "description": "Words to look for."},
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 10,
                    "default": 5,
                    "description": "Maximum number of results (1-10, default 5).",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    },
}

OPEN_DOCUMENT_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "open_document",
        "description": (
            "Open an article by its doc_id and return its full text. References to other "
            "articles are written as [[Title]]."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "doc_id": {"type": "string", "description": "A doc_id returned by search."}
            },
            "required": ["doc_id"],
            "additionalProperties": False,
        },
    },
}

_SPECS = [SEARCH_SPEC, OPEN_DOCUMENT_SPEC]
_CHECKER = ArgumentChecker(_SPECS)

_DOC_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LINK = re.compile(r"\[\[([^\[\]\n]+)\]\]")
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_SNIPPET_CHARS = 160
# Scores: an exact title match beats everything, a title word beats any number of body words.
_EXACT_TITLE = 1000
_TITLE_WORD = 10
# Words so common that matching them says nothing about relevance.
_STOPWORDS = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "he", "her",
     "his", "in", "is", "it", "its", "of", "on", "or", "she", "that", "the", "their", "this",
     "to", "was", "were", "what", "when", "where", "which", "who", "whom", "whose", "why", "with")
)  # fmt: skip


class CorpusError(ValueError):
    """A corpus directory or document that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Document:
    """One parsed corpus document with the precomputed data search needs."""

    doc_id: str
    title: str
    text: str
    links: tuple[str, ...]
    snippet: str
    title_key: str
    title_words: frozenset[str]
    body_words: frozenset[str]


@dataclass(frozen=True)
class Corpus:
    """An immutable, searchable set of documents; shared by every environment built on it."""

    directory: Path
    documents: dict[str, Document]

    def search(self, query: str, limit: int) -> list[Document]:
        """Rank documents by term overlap with the query, title weighted high."""
        words = _words(query)
        key = " ".join(words)
        terms = {w for w in words if w not in _STOPWORDS} or set(words)
        scored: list[tuple[int, str, Document]] = []
        for doc in self.documents.values():
            score = _EXACT_TITLE if doc.title_key == key else 0
            score += _TITLE_WORD * len(terms & doc.title_words) + len(terms & doc.body_words)
            if score:
                scored.append((-score, doc.doc_id, doc))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [doc for _, _, doc in scored[:limit]]


# Parsed corpora by resolved directory, with a fingerprint of the files so edits are noticed;
# concurrent runs then share one parsed copy instead of re-reading the files.
_CACHE: dict[Path, tuple[tuple[tuple[str, int, int], ...], Corpus]] = {}


def load_corpus(directory: Path) -> Corpus:
    """Parse every `*.md` file in `directory` (cached); raise CorpusError when unusable.

    Validates that each document starts with `# Title`, has a body, has a unique title
    and doc_id, and that every `[[Title]]` reference names a document in the corpus.
    """
    root = directory.resolve()
    if not root.is_dir():
        raise CorpusError(f"{directory}: not a directory")
    fingerprint = _fingerprint(root)
    cached = _CACHE.get(root)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    corpus = _parse(root, [name for name, _, _ in fingerprint])
    _CACHE[root] = (fingerprint, corpus)
    return corpus


def _fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    with os.scandir(root) as scan:
        for entry in scan:
            if entry.name.endswith(".md") and entry.is_file():
                stat = entry.stat()
                entries.append((entry.name, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))


def _parse(root: Path, names: list[str]) -> Corpus:
    if not names:
        raise CorpusError(f"{root}: contains no .md documents")
    documents: dict[str, Document] = {}
    by_title: dict[str, str] = {}
    for name in names:
        doc = _parse_document(root / name)
        if doc.title_key in by_title:
            raise CorpusError(
                f"{root / name}: title {doc.title!r} is also used by {by_title[doc.title_key]}.md"
            )
        by_title[doc.title_key] = doc.doc_id
        documents[doc.doc_id] = doc
    for doc in documents.values():
        for link in doc.links:
            if " ".join(_words(link)) not in by_title:
                raise CorpusError(f"{root / doc.doc_id}.md: [[{link}]] names no document")
    return Corpus(directory=root, documents=documents)


def _parse_document(path: Path) -> Document:
    doc_id = path.stem
    if not _DOC_ID.match(doc_id):
        raise CorpusError(f"{path}: file name must be a doc_id like kestrel-observatory.md")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: cannot read ({exc})") from exc
    first, _, rest = raw.partition("\n")
    if not first.startswith("# ") or not first[2:].strip():
        raise CorpusError(f"{path}: line 1: must be a '# Title' heading")
    title = first[2:].strip()
    text = rest.strip()
    if not text:
        raise CorpusError(f"{path}: document has no text after the title")
    title_words = _words(title)
    return Document(
        doc_id=doc_id,
        title=title,
        text=text,
        links=tuple(link.strip() for link in _LINK.findall(text)),
        snippet=_snippet(text),
        title_key=" ".join(title_words),
        title_words=frozenset(title_words),
        body_words=frozenset(_words(text)),
    )


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _snippet(text: str) -> str:
    first = _SENTENCE_END.split(" ".join(text.split()), maxsplit=1)[0]
    if len(first) <= _SNIPPET_CHARS:
        return first
    return first[: _SNIPPET_CHARS - 1].rstrip() + "…"


class ResearchEnvironment:
    """One run's view of a corpus; stateless, so concurrent runs may share the corpus."""

    replayable = True
    """Deterministic: the same calls on a fresh world return the same results."""

    def __init__(self, *, corpus: Corpus, answer_contains: list[str]) -> None:
        """Serve `corpus`; success needs every `answer_contains` string in the final answer."""
        self.corpus = corpus
        self.answer_contains = list(answer_contains)

    def tool_specs(self) -> list[dict[str, Any]]:
        """The `search` and `open_document` tools."""
        # A copy: callers (dialects, recorders) may edit it; the module's specs are shared.
        return copy.deepcopy(_SPECS)

    def prompt_variables(self) -> dict[str, str]:
        """`document_count`: how many documents the corpus holds."""
        return {"document_count": str(len(self.corpus.documents))}

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run `search` or `open_document`; bad arguments and unknown ids are error outcomes."""
        refused = argument_failure(_CHECKER, name, arguments)
        if refused is not None:
            return refused
        if name == "search":
            hits = self.corpus.search(arguments["query"], int(arguments.get("limit", 5)))
            results = [{"doc_id": d.doc_id, "title": d.title, "snippet": d.snippet} for d in hits]
            return ToolOutcome(output=json.dumps(results))
        doc = self.corpus.documents.get(arguments["doc_id"])
        if doc is None:
            return ToolOutcome.failure(
                ToolErrorKind.MISSING,
                f"no document with doc_id {arguments['doc_id']!r}; use search first",
            )
        return ToolOutcome(
            output=json.dumps({"doc_id": doc.doc_id, "title": doc.title, "text": doc.text})
        )

    def check_success(self, final_answer: str) -> SuccessResult:
        """Passed when every expected string occurs in the answer, ignoring case."""
        answer = final_answer.lower()
        missing = [s for s in self.answer_contains if s.lower() not in answer]
        if missing:
            return SuccessResult(passed=False, detail=f"The answer lacks {missing[0]!r}.")
        return SuccessResult(passed=True, detail="The answer contains every expected string.")
