"""The research world: ranking, multi-hop walks over the sample corpus, errors, caching."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from traces.model import ToolErrorKind
from traces.sample_files import samples_dir
from traces.tasks import build_environment, load_task, render_prompts
from traces.tools.research import CorpusError, ResearchEnvironment, load_corpus

SAMPLES = samples_dir()
CORPUS = SAMPLES / "corpus" / "research"
LINK = re.compile(r"\[\[([^\]]+)\]\]")


@pytest.fixture
def env(tmp_path: Path) -> ResearchEnvironment:
    task = load_task(SAMPLES / "tasks" / "research.toml")
    built = build_environment(task, seed=0, sandbox_dir=tmp_path)
    assert isinstance(built, ResearchEnvironment)
    return built


def call(env: ResearchEnvironment, name: str, arguments: dict[str, Any]) -> Any:
    outcome = asyncio.run(env.call(name, arguments))
    assert outcome.error is None, outcome
    return json.loads(outcome.output)


def follow(env: ResearchEnvironment, start: str) -> list[dict[str, str]]:
    """Walk the references the way the simulator policy does: search, open top, repeat."""
    opened = []
    title: str | None = start
    while title is not None:
        hits = call(env, "search", {"query": title})
        assert hits[0]["title"] == title
        doc = call(env, "open_document", {"doc_id": hits[0]["doc_id"]})
        opened.append(doc)
        links = LINK.findall(doc["text"])
        assert len(links) <= 1
        title = links[0] if links else None
    return opened


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]


def test_corpus_size_and_shape() -> None:
    corpus = load_corpus(CORPUS)
    assert 20 <= len(corpus.documents) <= 30
    doc = corpus.documents["kestrel-observatory"]
    assert doc.title == "Kestrel Observatory"
    assert doc.links == ("Halvard Brenn",)


@pytest.mark.parametrize(
    "title",
    [
        "Kestrel Observatory",
        "Halvard Brenn",
        "Tarrow Glassworks",
        "Ostry Quarry",
        "Vell Family Trust",
        "Corvane Institute of Engineering",
        "Tobias Quell",
        "Kestrel",
        "Tarrow",
    ],
)
def test_exact_title_ranks_first(env: ResearchEnvironment, title: str) -> None:
    hits = call(env, "search", {"query": title})
    assert hits[0]["title"] == title
    # The distractors share words with the title, so there is always competition.
    assert len(hits) > 1


def test_exact_title_match_ignores_case_and_punctuation(env: ResearchEnvironment) -> None:
    assert call(env, "search", {"query": "halvard  BRENN!"})[0]["doc_id"] == "halvard-brenn"


def test_search_result_shape_and_limit(env: ResearchEnvironment) -> None:
    hits = call(env, "search", {"query": "Tarrow"})
    assert len(hits) == 5
    assert set(hits[0]) == {"doc_id", "title", "snippet"}
    assert hits[0]["snippet"].startswith("Tarrow is a market town")
    assert len(call(env, "search", {"query": "Tarrow", "limit": 2})) == 2
    assert len(call(env, "search", {"query": "Tarrow", "limit": 10})) == 10
    assert call(env, "search", {"query": "zeppelin"}) == []


def test_title_words_outrank_body_words(env: ResearchEnvironment) -> None:
    hits = call(env, "search", {"query": "glassworks museum"})
    assert hits[0]["title"] == "Tarrow Glassworks Museum"
    assert hits[1]["title"] == "Tarrow Glassworks"


def test_sample_question_four_hops(env: ResearchEnvironment, tmp_path: Path) -> None:
    task = load_task(SAMPLES / "tasks" / "research.toml")
    _, user = render_prompts(task, env)
    start = re.findall(r'"([^"]+)"', user)
    assert start == ["Kestrel Observatory"]
    opened = follow(env, start[0])
    assert [d["title"] for d in opened] == [
        "Kestrel Observatory",
        "Halvard Brenn",
        "Tarrow Glassworks",
        "Ostry Quarry",
        "Vell Family Trust",
    ]
    answer = first_sentence(opened[-1]["text"])
    assert "Marisol Vell" in answer
    verdict = env.check_success(answer)
    assert verdict.passed, verdict.detail
    assert env.check_success("MARISOL VELL").passed
    assert not env.check_success("Halvard Brenn the Younger").passed


def test_second_question_three_hops(env: ResearchEnvironment) -> None:
    opened = follow(env, "Greywater Canal")
    assert [d["title"] for d in opened] == [
        "Greywater Canal",
        "Ilse Damaris",
        "Corvane Institute of Engineering",
        "Tobias Quell",
    ]
    assert "Saltmere" in first_sentence(opened[-1]["text"])


def test_open_document_shape_and_unknown_id(env: ResearchEnvironment) -> None:
    doc = call(env, "open_document", {"doc_id": "ostry-quarry"})
    assert set(doc) == {"doc_id", "title", "text"}
    assert doc["title"] == "Ostry Quarry" and not doc["text"].startswith("#")
    outcome = asyncio.run(env.call("open_document", {"doc_id": "atlantis"}))
    assert outcome.error is not None and "atlantis" in outcome.error
    assert outcome.error_kind == ToolErrorKind.MISSING


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("search", {"query": ""}, "query"),
        ("search", {}, "query"),
        ("search", {"query": "x", "limit": 0}, "limit"),
        ("search", {"query": "x", "limit": 11}, "limit"),
        ("search", {"query": "x", "limit": "3"}, "limit"),
        ("search", {"query": "x", "limit": True}, "limit"),
        ("search", {"query": "x", "page": 2}, "page"),
        ("open_document", {"doc_id": 5}, "doc_id"),
        ("open_document", {}, "doc_id"),
    ],
)
def test_schema_violations_name_the_field(
    env: ResearchEnvironment, name: str, arguments: dict[str, Any], field: str
) -> None:
    outcome = asyncio.run(env.call(name, arguments))
    assert outcome.error is not None
    assert outcome.error.startswith(f"invalid arguments for {name}: {field}: "), outcome.error
    assert outcome.error_kind == ToolErrorKind.INVALID_ARGUMENTS


def test_unknown_tool(env: ResearchEnvironment) -> None:
    outcome = asyncio.run(env.call("browse", {"url": "x"}))
    assert outcome.error is not None and "unknown tool" in outcome.error
    assert outcome.error_kind == ToolErrorKind.NOT_FOUND


def write_doc(directory: Path, doc_id: str, text: str) -> None:
    (directory / f"{doc_id}.md").write_text(text, encoding="utf-8")


def test_corpus_is_parsed_once_and_reloaded_when_edited(tmp_path: Path) -> None:
    write_doc(tmp_path, "alpha", "# Alpha\n\nAlpha links to [[Beta]].\n")
    write_doc(tmp_path, "beta", "# Beta\n\nBeta is the end.\n")
    first = load_corpus(tmp_path)
    assert load_corpus(tmp_path) is first
    write_doc(tmp_path, "gamma", "# Gamma\n\nA new document.\n")
    reloaded = load_corpus(tmp_path)
    assert reloaded is not first and "gamma" in reloaded.documents


@pytest.mark.parametrize(
    ("doc_id", "text", "problem"),
    [
        ("alpha", "Alpha without heading\n", "line 1: must be a '# Title' heading"),
        ("alpha", "# Alpha\n", "has no text"),
        ("alpha", "# Alpha\n\nSee [[Nowhere]].\n", "[[Nowhere]] names no document"),
        ("Bad Name", "# Bad\n\nText.\n", "file name must be a doc_id"),
        ("alpha-two", "# Beta\n\nSame title.\n", "is also used by"),
    ],
)
def test_corpus_problems_name_the_file(
    tmp_path: Path, doc_id: str, text: str, problem: str
) -> None:
    write_doc(tmp_path, "beta", "# Beta\n\nBeta is fine.\n")
    write_doc(tmp_path, doc_id, text)
    with pytest.raises(CorpusError, match=re.escape(problem)) as info:
        load_corpus(tmp_path)
    assert ".md" in str(info.value)


def test_empty_or_missing_corpus(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"no \.md documents"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="not a directory"):
        load_corpus(tmp_path / "absent")
