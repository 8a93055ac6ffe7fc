"""Stream delivery as MiniMax's provider verifier tests it: where usage sits, content and
reasoning sharing a delta, U+FFFD from a character cut between chunks, a stream buffered
into one chunk, and the chunk-size distribution. Streams are read line by line as recorded
(`StreamReader`), then graded by the streaming check; what a real host does by design
(OpenAI's final usage chunk, vLLM's requested continuous usage) stays quiet."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from analyzer.checks.records import Finding, Run, Step
from analyzer.checks.streaming import stream_anomalies
from analyzer.stream_shape import describe_shape, stream_shape
from traces.sse import StreamReader
from traces.stream_quality import ONE_DELTA_MIN_CHARS, DeliveryLog, gap_stats, size_stats

USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def _line(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
    chunk: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", **extra}
    chunk["choices"] = (
        [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    )
    return "data: " + json.dumps(chunk, ensure_ascii=False)


def _read(lines: list[str], times: list[float] | None = None) -> StreamReader:
    reader = StreamReader()
    for n, line in enumerate([*lines, "data: [DONE]"]):
        reader.line(line, times[n] if times and n < len(times) else float(n))
    reader.close()
    return reader


def _anomalies(lines: list[str]) -> list[dict[str, Any]]:
    exchange = _read(lines).exchange(
        request_body={},
        started_at=datetime(2025, 1, 1, tzinfo=UTC),
        latency_ms=1.0,
        http_status=200,
        headers={},
    )
    return exchange.anomalies


def _kinds(lines: list[str]) -> list[str]:
    return [a["kind"] for a in _anomalies(lines)]


def _graded(lines: list[str], **step: Any) -> list[Finding]:
    recorded = Step(index=0, finish_reason="stop", anomalies=tuple(_anomalies(lines)), **step)
    return list(stream_anomalies(recorded, Run(id="r", steps=(recorded,))))


def _words(text: str, size: int = 4) -> list[str]:
    """`text` as a token stream sends it: a few characters per delta."""
    return [_line({"content": text[i : i + size]}) for i in range(0, len(text), size)]


ANSWER = (
    "Recursion is a function calling itself on a smaller part of the same problem until it "
    "reaches a base case it can answer directly; the answers then flow back up the calls."
)

# -- usage ------------------------------------------------------------------------------------


def test_openai_final_usage_chunk_is_clean() -> None:
    # OpenAI: `usage: null` on every chunk, then one with empty choices carries it.
    lines = [
        _line({"role": "assistant", "content": "Hi"}, usage=None),
        _line({}, "stop", usage=None),
        _line(None, usage=USAGE),
    ]
    assert _kinds(lines) == []


def test_usage_on_the_finish_chunk_alone_is_clean() -> None:
    assert _kinds([_line({"content": "Hi"}), _line({}, "stop", usage=USAGE)]) == []


def test_usage_in_every_chunk_is_noted_once() -> None:
    lines = [
        _line({"content": "Hi"}, usage=USAGE),
        _line({"content": " there"}, usage=USAGE),
        _line({}, "stop", usage=USAGE),
        _line(None, usage=USAGE),
    ]
    (anomaly,) = _anomalies(lines)
    assert anomaly == {
        "kind": "usage_before_last_chunk",
        "chunks_with_usage": 4,
        "first_at": 0,
        "chunks": 4,
        "in_every_chunk": True,
    }


def test_usage_on_the_finish_chunk_and_again_after_it_is_noted() -> None:
    # A client summing usage chunks counts these tokens twice.
    lines = [_line({"content": "Hi"}), _line({}, "stop", usage=USAGE), _line(None, usage=USAGE)]
    (anomaly,) = _anomalies(lines)
    assert anomaly["chunks_with_usage"] == 2 and anomaly["in_every_chunk"] is False


def test_a_stream_cut_before_its_finish_has_no_closing_verdict() -> None:
    lines = [_line({"content": "Hi"}, usage=USAGE), _line({"content": ANSWER})]
    assert _kinds(lines) == []


def test_usage_everywhere_is_a_warning_unless_the_request_asked_for_it() -> None:
    lines = [_line({"content": "Hi"}, usage=USAGE), _line({}, "stop", usage=USAGE)]
    (finding,) = _graded(lines, request_params={"stream_options": {"include_usage": True}})
    assert (finding.kind, finding.severity, finding.layer, finding.confidence) == (
        "stream_usage_before_last_chunk",
        "warning",
        "provider",
        None,
    )
    # vLLM's documented option: usage in every chunk is what the client asked for.
    asked = {"stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    assert _graded(lines, request_params=asked) == []


# -- content and reasoning in one delta ---------------------------------------------------------


def test_content_and_reasoning_in_one_delta_is_counted() -> None:
    lines = [
        _line({"reasoning_content": "A final"}),
        _line({"reasoning_content": " thought.", "content": "Answer"}),
        _line({"reasoning_content": "more", "content": " starts."}),
        _line({}, "stop"),
    ]
    (anomaly,) = _anomalies(lines)
    assert anomaly["kind"] == "content_and_reasoning_in_one_delta"
    assert (anomaly["chunk"], anomaly["deltas"], anomaly["same_text"]) == (1, 2, False)
    (finding,) = _graded(lines)
    assert finding.kind == "stream_content_and_reasoning_in_one_delta"
    assert finding.evidence["first"]["content"] == "Answer"


def test_reasoning_in_two_fields_of_one_delta_is_not_content() -> None:
    # vLLM during its rename sends each reasoning piece as both fields: not content.
    lines = [
        _line({"reasoning_content": "Think", "reasoning": "Think"}),
        _line({"content": "Done."}),
        _line({}, "stop"),
    ]
    assert _kinds(lines) == []


# -- U+FFFD -------------------------------------------------------------------------------------


def test_a_character_cut_between_chunks_is_sure() -> None:
    # vllm-mlx PR #109: 'ď' decoded byte by byte.
    lines = [_line({"content": " \ufffd"}), _line({"content": "\ufffdábelské"}), _line({}, "stop")]
    (anomaly,) = _anomalies(lines)
    assert anomaly["split"] is True and anomaly["pieces"] == 2
    assert anomaly["excerpt"] == [" \ufffd", "\ufffdábelské"]
    (finding,) = _graded(lines)
    assert (finding.severity, finding.confidence) == ("warning", 0.95)
    assert finding.evidence["request_has_replacement_char"] is False


def test_replacement_inside_a_piece_is_less_sure() -> None:
    lines = [_line({"content": "无法\ufffd\ufffd问实时"}), _line({}, "stop")]
    (finding,) = _graded(lines)
    assert finding.confidence == 0.6 and finding.evidence["first"]["at_edge"] is False


def test_replacement_the_request_already_held_may_be_quoted() -> None:
    # A tool read a file that was not UTF-8; the model quotes its U+FFFD back.
    lines = [_line({"content": "The file says caf\ufffd."}), _line({}, "stop")]
    messages = ({"role": "tool", "tool_call_id": "c", "content": "caf\ufffd"},)
    (finding,) = _graded(lines, request_messages=messages)
    assert (finding.severity, finding.confidence) == ("info", 0.3)
    assert finding.evidence["request_has_replacement_char"] is True


def test_replacement_in_escaped_arguments_is_seen() -> None:
    call = {"index": 0, "id": "call_0", "type": "function", "function": {"name": "w"}}
    lines = [
        _line({"tool_calls": [{**call, "function": {"name": "w", "arguments": '{"t": "a'}}]}),
        _line({"tool_calls": [{"index": 0, "function": {"arguments": '\\ufffd"}'}}]}),
        _line({}, "tool_calls"),
    ]
    (anomaly,) = _anomalies(lines)
    assert anomaly["field"] == "arguments" and anomaly["at_edge"] is True


def test_plain_text_has_no_replacement() -> None:
    assert _kinds([*_words("Déjà vu — “quoted” 中文 🫠 text."), _line({}, "stop")]) == []


# -- a stream buffered into one chunk -------------------------------------------------------------


def test_a_long_answer_in_one_delta_is_buffered() -> None:
    lines = [_line({"role": "assistant", "content": ""}), _line({"content": ANSWER})]
    (anomaly,) = _anomalies([*lines, _line({}, "stop")])
    assert anomaly == {
        "kind": "single_chunk",
        "form": "one_delta",
        "field": "content",
        "chars": len(ANSWER),
        "of_chars": len(ANSWER),
        "deltas": 1,
        "chunks": 3,
    }
    (finding,) = _graded([*lines, _line({}, "stop")])
    assert finding.kind == "stream_single_chunk"
    assert finding.confidence == round(1 - 30 / len(ANSWER), 2)


def test_nearly_all_of_it_in_one_delta_is_buffered_too() -> None:
    lines = [_line({"content": "Rec"}), _line({"content": ANSWER[3:]}), _line({}, "stop")]
    assert _kinds(lines) == ["single_chunk"]


def test_short_answers_and_token_streams_are_not_buffered() -> None:
    short = "x" * (ONE_DELTA_MIN_CHARS - 1)
    assert _kinds([_line({"content": short}), _line({}, "stop")]) == []
    assert _kinds([*_words(ANSWER), _line({}, "stop")]) == []
    # A whole call in one delta is how many tool parsers stream: not judged.
    arguments = json.dumps({"content": ANSWER})
    call = {"index": 0, "id": "c", "type": "function"}
    whole = _line({"tool_calls": [{**call, "function": {"name": "w", "arguments": arguments}}]})
    assert _kinds([whole, _line({}, "tool_calls")]) == []


# -- the chunk-size distribution ------------------------------------------------------------------


def test_shape_reports_sizes_packets_and_gaps() -> None:
    lines = [
        _line({"role": "assistant", "content": ""}),
        _line({"reasoning_content": "Think"}),
        _line({"content": "ab"}),
        _line({"content": "cdefgh"}),
        _line({"content": "x" * 300}),
        _line({}, "stop"),
    ]
    reader = _read(lines, times=[5.0, 10.0, 12.0, 13.0, 20.0, 21.0])
    shape = reader.assembler.delivery.shape()
    assert shape["chunks"] == 6 and shape["timed"] is True
    assert shape["content"] == {"deltas": 3, "chars": 308, "median": 6.0, "p90": 300.0, "max": 300}
    assert shape["reasoning"] == {"deltas": 1, "chars": 5, "median": 5.0, "p90": 5.0, "max": 5}
    assert shape["arguments"] is None
    assert shape["packets"] == {"tiny": 1, "normal": 2, "large": 1}
    assert shape["first_text_ms"] == 10.0
    assert shape["gap_ms"] == {"median": 2.0, "p90": 7.0, "max": 7.0}  # gaps 2, 1, 7
    untimed = reader.assembler.delivery.shape(timed=False)
    assert untimed["gap_ms"] is None and untimed["first_text_ms"] is None


def test_stats_of_nothing_are_unknown_not_zero() -> None:
    assert size_stats([]) is None and gap_stats([1.0]) is None
    assert DeliveryLog([]).shape()["content"] is None


def test_stored_lines_replay_into_the_same_shape() -> None:
    lines = [_line({"reasoning_content": "Think"}), _line({"content": "Done."}), _line({}, "stop")]
    timed = json.dumps([[10.0 + n, line] for n, line in enumerate(lines)])
    shape = stream_shape(timed)
    assert shape is not None and shape["chunks"] == 3 and shape["first_text_ms"] == 10.0
    assert describe_shape(shape) == (
        "3 chunks · reasoning 1 delta, median 5 p90 5 max 5 chars · content 1 delta, median 5 "
        "p90 5 max 5 chars · first text at 10 ms · gaps median 1 p90 1 max 1 ms"
    )
    logged = stream_shape(json.dumps([[None, line] for line in lines]))
    assert logged is not None and describe_shape(logged).endswith("arrival times unknown")
    assert stream_shape(None) is None and stream_shape("not json") is None
