"""Research strategy: search, open, follow `[[Links]]` until a document has none."""

from __future__ import annotations

import re
from typing import Any

from traces.sim.strategies.base import Plan, looks_like_error, quoted_phrase
from traces.sim.transcript import Call, Transcript
from traces.sim.voice import Voice, excerpt, sentences

_SEARCH = "search"
_OPEN = "open_document"
_LINK = re.compile(r"\[\[([^\]|]+)(?:\|[^\]]*)?\]\]")
_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s|$)")
_WORD = re.compile(r"\w+")

_START = (
    'The question starts from "{query}". I will search for that article first.',
    'I need to follow references starting at "{query}". Searching for it.',
    'Let me find the article "{query}" before following any links.',
)
_OPEN_ONE = (
    '"{title}" ({doc_id}) is the top result for "{query}". Opening it.',
    'The search for "{query}" ranks {doc_id} first; I\'ll open that document.',
    'Best match for "{query}" is "{title}", opening {doc_id}.',
)
_OPEN_TWO = (
    'No result is titled exactly "{query}"; "{a}" and "{b}" both look plausible, so I will '
    "open both at once and compare.",
    'The top two hits for "{query}" ("{a}", "{b}") are close. Opening both in parallel.',
)
_FOLLOW = (
    '"{title}" refers to [[{link}]]. That is the next hop, so I\'ll search for "{link}".',
    'The document "{title}" links to "{link}"; following the reference.',
    'Hop {hop}: "{title}" points on to "{link}". Searching for it next.',
)
_ANSWER = (
    '"{title}" has no further reference, so the chain ends here. Its first sentence answers '
    "the question.",
    'No [[link]] in "{title}": this is the last hop ({hop} documents read). The answer is in '
    "its opening sentence.",
)
_FAILED = (
    'The {tool} call failed ({error}). I will try "{query}" again.',
    'Got an error from {tool}: {error}. Retrying with "{query}".',
)


def _title(entry: dict[str, Any]) -> str:
    return str(entry.get("title") or entry.get("doc_id") or "")


def _words(text: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(text)}


def first_sentence(text: str) -> str:
    """The first sentence of a document's body (heading lines skipped, links unwrapped)."""
    body = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    body = " ".join(_LINK.sub(lambda m: m.group(1), body).split())
    match = _SENTENCE.match(body)
    return match.group(1) if match else excerpt(body, 300)


class ResearchStrategy:
    """Multi-hop lookups with `search` and `open_document`."""

    name = "research"

    def failed(self, call: Call) -> bool:
        """Search must return a JSON list, open_document a JSON object with `text`."""
        data = call.result_json()
        if call.name == _SEARCH:
            return not isinstance(data, list)
        if call.name == _OPEN:
            return not (isinstance(data, dict) and isinstance(data.get("text"), str))
        return looks_like_error(call.result)

    def next_plan(self, transcript: Transcript, voice: Voice) -> Plan:
        """Search the quoted start entity, open the best hit, follow links, answer."""
        if not transcript.turns:
            query = self._start_query(transcript)
            return self._search(voice.pick(_START, query=query), query)
        names = transcript.turns[-1].names()
        if _OPEN in names:
            return self._after_open(transcript, voice)
        if _SEARCH in names:
            return self._after_search(transcript, voice)
        query = self._start_query(transcript)
        return self._search(voice.pick(_START, query=query), query)

    @staticmethod
    def _search(reasoning: str, query: str) -> Plan:
        return Plan(reasoning=reasoning, calls=((_SEARCH, {"query": query}),))

    @staticmethod
    def _start_query(transcript: Transcript) -> str:
        phrase = quoted_phrase(transcript.user_text)
        if phrase:
            return phrase
        words = _WORD.findall(transcript.user_text)[:8]
        return " ".join(words) or "overview"

    def _opened(self, transcript: Transcript) -> dict[str, dict[str, Any]]:
        docs: dict[str, dict[str, Any]] = {}
        for turn in transcript.turns:
            for call in turn.calls:
                if call.name == _OPEN and not self.failed(call):
                    data = call.result_json()
                    docs[str(data.get("doc_id") or call.arguments().get("doc_id"))] = data
        return docs

    def _last_search(self, transcript: Transcript, before: int) -> Call | None:
        for turn in reversed(transcript.turns[:before]):
            for call in reversed(turn.calls):
                if call.name == _SEARCH:
                    return call
        return None

    def _after_search(self, transcript: Transcript, voice: Voice) -> Plan:
        call = next(c for c in reversed(transcript.turns[-1].calls) if c.name == _SEARCH)
        query = str(call.arguments().get("query") or self._start_query(transcript))
        if self.failed(call):
            error = excerpt(call.result or "no result", 100)
            return self._search(voice.pick(_FAILED, tool=_SEARCH, error=error, query=query), query)
        results = [r for r in call.result_json() if isinstance(r, dict) and r.get("doc_id")]
        opened = self._opened(transcript)
        fresh = [r for r in results if str(r["doc_id"]) not in opened]
        if not results:
            return Plan(
                reasoning=f'The search for "{query}" returned nothing, and I have no other lead.',
                content=f'I could not find any document about "{query}".',
            )
        if not fresh:
            # Every hit is already read: the references loop. Answer from the latest document.
            latest = list(opened.values())[-1]
            return self._answer(latest, voice, len(opened))
        exact = [r for r in fresh if _title(r).lower() == query.lower()]
        targets = exact[:1] or fresh[:2]
        if len(targets) == 1:
            top = targets[0]
            reasoning = voice.pick(_OPEN_ONE, title=_title(top), doc_id=top["doc_id"], query=query)
        else:
            reasoning = voice.pick(
                _OPEN_TWO, query=query, a=_title(targets[0]), b=_title(targets[1])
            )
        calls = tuple((_OPEN, {"doc_id": str(r["doc_id"])}) for r in targets)
        return Plan(reasoning=reasoning, calls=calls)

    def _after_open(self, transcript: Transcript, voice: Voice) -> Plan:
        last_index = len(transcript.turns) - 1
        opens = [c for c in transcript.turns[-1].calls if c.name == _OPEN]
        docs = [c.result_json() for c in opens if not self.failed(c)]
        search = self._last_search(transcript, last_index)
        query = str(search.arguments().get("query")) if search else self._start_query(transcript)
        if not docs:
            return self._retry_open(transcript, voice, search, query, opens[-1])
        query_words = _words(query)
        # Exact title first, then the most words shared with the query; ties keep hit order.
        doc = max(
            docs,
            key=lambda d: (
                _title(d).lower() == query.lower(),
                len(_words(_title(d)) & query_words),
            ),
        )
        opened = self._opened(transcript)
        seen_titles = {_title(d).lower() for d in opened.values()}
        links = [link.strip() for link in _LINK.findall(str(doc.get("text", "")))]
        following = next((link for link in links if link.lower() not in seen_titles), None)
        if following is None:
            return self._answer(doc, voice, len(opened))
        reasoning = sentences(
            f'"{_title(doc)}" says: {excerpt(first_sentence(str(doc["text"])), 140)}',
            voice.pick(_FOLLOW, title=_title(doc), link=following, hop=len(opened)),
        )
        return self._search(reasoning, following)

    def _retry_open(
        self, transcript: Transcript, voice: Voice, search: Call | None, query: str, failed: Call
    ) -> Plan:
        attempted = {
            str(c.arguments().get("doc_id"))
            for turn in transcript.turns
            for c in turn.calls
            if c.name == _OPEN
        }
        hits = search.result_json() if search is not None else None
        candidates = [
            str(r["doc_id"])
            for r in (hits if isinstance(hits, list) else [])
            if isinstance(r, dict) and r.get("doc_id") and str(r["doc_id"]) not in attempted
        ]
        error = excerpt(failed.result or "no result", 100)
        if candidates:
            reasoning = (
                f"Opening the document failed ({error}). The search also listed "
                f"{candidates[0]}, so I will try that one."
            )
            return Plan(reasoning=reasoning, calls=((_OPEN, {"doc_id": candidates[0]}),))
        return self._search(voice.pick(_FAILED, tool=_OPEN, error=error, query=query), query)

    @staticmethod
    def _answer(doc: dict[str, Any], voice: Voice, hops: int) -> Plan:
        sentence = first_sentence(str(doc.get("text", "")))
        reasoning = sentences(
            voice.pick(_ANSWER, title=_title(doc), hop=hops), f"It reads: {excerpt(sentence, 200)}"
        )
        return Plan(reasoning=reasoning, content=f"{sentence}\n\nSource: {_title(doc)}.")
