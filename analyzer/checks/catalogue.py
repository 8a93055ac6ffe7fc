"""Every finding kind the checks can emit, described for the person reading a trace.

A user opening a 300-step trace wants to know what a `stream_tool_call_index_missing` means,
whether it is the model's, the tool's or the host's fault, and which real-world failure it
stands for. This catalogue answers that once, for `traces failures --kinds` and for the
descriptions shown beside counts and drill-downs. `covers` uses the failure classes of
`shared/external/dialects/raw_outputs/observed_failures.jsonl` where one applies.

Layer and severity are defaults: some checks grade a finding by its evidence (a leak in
content is an error, in reasoning a warning; a retried HTTP failure is a warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.checks.records import Layer, Severity


@dataclass(frozen=True)
class KindInfo:
    """What one finding kind means and who it usually blames."""

    kind: str
    layer: Layer
    severity: Severity
    check: str
    """The module of `analyzer/checks` that emits it."""
    description: str
    covers: tuple[str, ...]
    """Real-world failure classes this kind recognises."""
    inferred: bool = False
    """The check infers it from indirect evidence (token counts, a text heuristic), so each
    finding carries a `confidence`; otherwise it is observed directly and carries none."""


def _kind(
    kind: str,
    layer: Layer,
    severity: Severity,
    check: str,
    description: str,
    *covers: str,
    inferred: bool = False,
) -> KindInfo:
    return KindInfo(kind, layer, severity, check, " ".join(description.split()), covers, inferred)


_ENTRIES = (
    # -- leaks and calls ---------------------------------------------------------------------
    _kind(
        "leaked_special_tokens",
        "provider",
        "error",
        "leaks",
        """Raw call or chat-template tokens (Kimi `<|tool_call_begin|>`, DeepSeek `<｜tool▁sep｜>`,
        `<tool_call>`, their stripped forms) reached content or reasoning: the host's parser
        missed the model's syntax, so the call was lost. `<tool_call>` tags alone from a
        family that calls otherwise (Kimi, DeepSeek, Llama…) are the model's foreign syntax.""",
        "special_tokens_in_content",
        "special_tokens_in_reasoning",
        inferred=True,
    ),
    _kind(
        "harmony_unparsed",
        "provider",
        "error",
        "harmony",
        """Harmony markup of gpt-oss reached content or reasoning: `<|channel|>` tokens, or the
        words a detokenizer leaves without them (`analysisWe…assistantfinal`, `to=functions.NAME
        json{…}`). The host ran no harmony parser, so reasoning and answer mix and calls are
        lost; stripped words are inferred, graded by their anchor.""",
        "harmony_channels_in_content",
        inferred=True,
    ),
    _kind(
        "tool_call_as_text",
        "model",
        "error",
        "calls",
        """A call to a declared tool came back as text in content (bare, fenced, wrapped or
        listed JSON), so nothing ran. The model's, or the host's when the text is exactly the
        family's own plain-JSON call syntax (Llama, Mistral) its parser should have read.
        Where the request asked for JSON, only calls beyond doubt (arguments that fit the
        tool's schema, JSON not in the shape a given schema asked for).""",
        "tool_call_as_json_text",
        inferred=True,
    ),
    _kind(
        "dropped_call",
        "provider",
        "error",
        "calls",
        """Tools were offered and the turn ended with nothing visible, yet something was
        generated: completion tokens beyond the reasoning, the reasoning ending with a call's
        arguments, or (weakest, without usage) the host's finish_reason. The host produced a
        call and its parser silently dropped it, so the agent stalls.""",
        "tool_call_silently_dropped",
        "tool_args_in_reasoning",
        inferred=True,
    ),
    _kind(
        "object_arguments",
        "provider",
        "warning",
        "calls",
        """Tool-call arguments came back as a JSON object instead of the string OpenAI specifies.
        Strict clients fail to parse them; llama.cpp and some gateways do this.""",
        "arguments_as_object",
    ),
    _kind(
        "invalid_json_arguments",
        "model",
        "error",
        "calls",
        """The call's arguments are not a JSON object (unterminated string, missing brace), so the
        tool cannot run and resending them can make the host answer 400. The model's output
        when the turn finished; the host's when its stream never sent a finish_reason.""",
        "malformed_arguments",
    ),
    _kind(
        "arguments_merged",
        "provider",
        "error",
        "calls",
        """One call's arguments hold several JSON objects back to back (`{..}{..}`): the host's
        stream gave parallel calls the same index, or resent the whole arguments in every
        chunk, and they were concatenated.""",
        "streaming_index_collision",
        "streaming_arguments_resent",
    ),
    _kind(
        "empty_arguments",
        "provider",
        "error",
        "emptied",
        """A call with required parameters arrived with `{}`, `""` or no arguments: the host's
        parser missed a value tag (GLM on vLLM) or, from the second turn on, its template broke
        the history. The evidence names the first such step and the clean steps before it.""",
        "arguments_silently_emptied",
        "arguments_emptied_after_first_turn",
    ),
    _kind(
        "schema_violation",
        "model",
        "error",
        "calls",
        """The arguments parse but break the tool's JSON Schema (wrong type, missing field); the
        first error path is in the evidence. The model's mistake, or a parser that does not
        convert XML parameter values to their schema types.""",
        "argument_type_wrong",
    ),
    _kind(
        "malformed_tool_name",
        "provider",
        "error",
        "calls",
        """The tool name carries pieces of a call format (`query_dataset<|channel|>commentary`) or
        is empty: the host's parser cut the name in the wrong place.""",
        "special_tokens_in_tool_name",
    ),
    _kind(
        "unknown_tool",
        "model",
        "error",
        "calls",
        """The model called a tool that was not declared (a hallucinated name), so the call
        fails; the declared names are in the evidence.""",
        "hallucinated_tool",
    ),
    _kind(
        "malformed_argument_key",
        "provider",
        "error",
        "calls",
        """An argument key carries a tag or quote (`path</arg_key>`): the host's parser kept
        part of the call syntax in the key, so the real parameter is missing.""",
        "special_tokens_in_argument_key",
    ),
    # -- finish_reason -----------------------------------------------------------------------
    _kind(
        "finish_stop_with_calls",
        "provider",
        "warning",
        "finish",
        """The turn has tool calls but finish_reason is `stop` (and no named tool_choice asked
        for that). Clients that loop on `tool_calls` end the run early; vLLM did this with
        `tool_choice: required`.""",
        "finish_reason_wrong",
    ),
    _kind(
        "finish_tool_calls_without_calls",
        "provider",
        "warning",
        "finish",
        """The finish_reason is `tool_calls` but the turn holds no call: the client takes the
        tool branch and finds nothing to run. Seen when a parser yields nothing under
        `tool_choice: required`.""",
        "finish_reason_wrong",
    ),
    _kind(
        "finish_length_with_calls",
        "provider",
        "warning",
        "finish",
        """The turn hit `length` yet carries calls. Complete calls mean the host mislabelled the
        finish (provider, warning); truncated ones mean the budget cut the model off (model,
        error).""",
        "finish_reason_wrong",
    ),
    _kind(
        "finish_length_hidden",
        "provider",
        "warning",
        "finish",
        """The turn used the whole `max_tokens` budget but finish_reason says otherwise (vLLM
        reports `tool_calls` once any call parsed), hiding that the last call may be
        truncated. Inferred from the budget spent to the token.""",
        "finish_reason_wrong",
        inferred=True,
    ),
    _kind(
        "tool_choice_ignored",
        "provider",
        "error",
        "tool_choice",
        """The request's `tool_choice` was not enforced: `required` or a named function and no
        call (or another function) came back, or `none` and calls did. Not judged on a
        response that failed, was cut at `length` or mid-stream, or stopped mid-thought with
        nothing after it (`empty_turn_after_reasoning`).""",
        "tool_choice_not_enforced",
    ),
    # -- streaming ---------------------------------------------------------------------------
    _kind(
        "stream_tool_call_name_repeated",
        "provider",
        "warning",
        "streaming",
        """The stream resent the function name in every chunk of a call; naive clients
        concatenate it (`read_fileread_file`) and call a tool that does not exist.""",
        "streaming_name_repeated",
    ),
    _kind(
        "stream_tool_call_id_repeated",
        "provider",
        "warning",
        "streaming",
        """The stream resent the call id (often with `type`) in every chunk; clients that start
        a new call per id fragment one call into many.""",
        "streaming_field_repeated",
    ),
    _kind(
        "stream_tool_call_id_changed",
        "provider",
        "warning",
        "streaming",
        """One call's id changed between chunks (or two calls shared an index): clients keyed
        on the id lose the call or pair its result with the wrong one.""",
        "streaming_id_unstable",
        "streaming_index_collision",
    ),
    _kind(
        "stream_tool_call_name_changed",
        "provider",
        "warning",
        "streaming",
        """The function name of one call index changed mid-stream: two calls were sent under the
        same index and get merged into one.""",
        "streaming_index_collision",
    ),
    _kind(
        "stream_tool_call_index_missing",
        "provider",
        "warning",
        "streaming",
        """Tool-call deltas came without `index`; the OpenAI SDK's accumulator crashes
        (`list indices must be integers or slices, not NoneType`). Gemini's compatible endpoint
        and some proxies do this.""",
        "streaming_index_missing",
    ),
    _kind(
        "stream_tool_call_index_not_zero_based",
        "provider",
        "warning",
        "streaming",
        """The first streamed call had index 1 (or -1), not 0: clients assembling by index leave
        a hole or raise IndexError. Typical of gateways translating from Anthropic block
        indices.""",
        "streaming_index_offset",
    ),
    _kind(
        "stream_tool_call_index_split",
        "provider",
        "warning",
        "streaming",
        """One delta carried several calls under the same index; clients merge them into one
        call with concatenated arguments.""",
        "streaming_index_collision",
    ),
    _kind(
        "stream_tool_call_arguments_cumulative",
        "provider",
        "warning",
        "streaming",
        """Each chunk repeated the arguments sent so far instead of the new fragment; clients
        that append get `{..}{..}` (DeepSeek and Qianfan in cumulative mode).""",
        "streaming_arguments_resent",
    ),
    _kind(
        "stream_tool_call_arguments_object_in_stream",
        "provider",
        "warning",
        "streaming",
        """Streamed arguments arrived as a JSON object rather than string fragments; clients
        that concatenate strings fail.""",
        "arguments_as_object",
    ),
    _kind(
        "stream_finish_reason_changed",
        "provider",
        "warning",
        "streaming",
        """The stream sent two different finish_reasons (`tool_calls`, then `stop`); clients
        honouring the last one drop the calls.""",
        "finish_reason_wrong",
    ),
    _kind(
        "stream_unparsable_chunk",
        "provider",
        "warning",
        "streaming",
        """A `data:` line was not strict JSON (two events glued together, a truncated chunk,
        NaN or 1e999, nesting too deep to parse); its content is lost for every client.""",
        "streaming_malformed_chunk",
    ),
    _kind(
        "stream_without_done",
        "provider",
        "warning",
        "streaming",
        """The stream ended without `data: [DONE]`. With a finish_reason the turn is complete
        but strict clients wait or fail; without one it was cut (HTTP ended it cleanly: the
        host stopped sending), the fragment is no answer and the call is retried. An error
        when no retry got a whole stream; the evidence counts the attempts cut.""",
        "streaming_truncated",
    ),
    _kind(
        "stream_usage_before_last_chunk",
        "provider",
        "warning",
        "streaming",
        """A chunk before the last carried usage (in every chunk, or on the finish chunk and
        again after it), unasked: clients that add up usage chunks count tokens many times.
        Not reported when the request asked for vLLM's `continuous_usage_stats`.""",
        "streaming_usage_not_last",
    ),
    _kind(
        "stream_content_and_reasoning_in_one_delta",
        "provider",
        "warning",
        "streaming",
        """One delta carried both content and reasoning (a reasoning parser that split the
        delta holding `</think>` in two); clients that switch from thinking to answer on the
        first content lose one of them.""",
        "streaming_reasoning_content_mixed",
    ),
    _kind(
        "stream_replacement_char",
        "provider",
        "warning",
        "streaming",
        """U+FFFD in streamed text or arguments: the host's detokenizer cut a multi-byte
        character between two chunks and sent each half decoded alone. Info, with half the
        confidence, when the request already held U+FFFD for the model to quote.""",
        "streaming_split_character",
        inferred=True,
    ),
    _kind(
        "stream_single_chunk",
        "provider",
        "warning",
        "streaming",
        """The stream arrived as one chunk: one delta held all (90% or more) of a content or
        reasoning text of 120 characters or more, where a real token stream sends a few
        characters per chunk. The host buffered the generation; the client waited for it.""",
        "streaming_buffered",
        inferred=True,
    ),
    _kind(
        "stream_other",
        "provider",
        "warning",
        "streaming",
        """A streaming irregularity this version of the checks has no name for; the anomaly's
        own kind is in the evidence.""",
    ),
    # -- HTTP --------------------------------------------------------------------------------
    _kind(
        "empty_response",
        "provider",
        "error",
        "http",
        """The host answered 200 with nothing generated: a stream of no choice (only `[DONE]`,
        a usage chunk, or no event), an empty body, or `choices: []`. It failed before its
        first token; the call is retried like a dropped connection, and a run that meets it
        for good ends `provider_error`.""",
        "empty_response",
    ),
    _kind(
        "http_reasoning_required",
        "client",
        "error",
        "http",
        """The host answered 400 because an assistant turn of the tool chain came back without
        its reasoning (DeepSeek thinking mode requires `reasoning_content`). The client's
        history replay is at fault.""",
        "interleaved_reasoning_required",
    ),
    _kind(
        "http_template_error",
        "provider",
        "error",
        "http",
        """The host's chat template raised while rendering the conversation (Jinja syntax or
        undefined errors, a parser it could not build), also inside a 500 that names no
        template (Jinja's bare `'dict object' has no attribute 'name'`, llama.cpp's `… at row
        49, column 79`): not a generic server failure, and the same request fails again.""",
        "chat_template_error",
    ),
    _kind(
        "http_argument_type_error",
        "provider",
        "error",
        "http",
        """The host refused tool-call arguments in the history for their type (a string where
        its template wants a mapping, or unparsable JSON): the dialect's arguments-back form
        does not match the host.""",
        "arguments_type_rejected",
    ),
    _kind(
        "http_bad_request",
        "client",
        "error",
        "http",
        """Some other 400: the request itself was refused (bad parameter, unanswered tool call,
        broken history). Read the message in the evidence.""",
        "bad_request",
    ),
    _kind(
        "http_rate_limit",
        "provider",
        "error",
        "http",
        """The host answered 429: too many requests or tokens for the key or the free tier. A
        warning when a retry succeeded.""",
        "rate_limited",
    ),
    _kind(
        "http_server_error",
        "provider",
        "error",
        "http",
        """The host failed with a 5xx (overloaded, no capacity, internal error) or an error
        inside the stream. A warning when a retry succeeded.""",
        "server_error",
    ),
    _kind(
        "http_timeout",
        "provider",
        "error",
        "http",
        """No complete answer in time: the client timed out (a stream still trickling at the
        request deadline included), or a gateway answered 408/504/524. Long reasoning behind a
        proxy with a short limit is the usual cause.""",
        "timeout",
    ),
    _kind(
        "http_connection",
        "provider",
        "error",
        "http",
        """The connection failed (refused, reset, server disconnected) before the answer was
        whole; a stream the host ended cleanly but early is `stream_without_done`. The
        fragment is no answer and the call is retried: a warning when a retry succeeded.""",
        "connection_failed",
    ),
    _kind(
        "http_context_overflow",
        "client",
        "error",
        "http",
        """The prompt plus max_tokens exceeded the context window: the history outgrew it and
        the client did not trim it. The host's when the request (reported or estimated prompt
        plus the budget asked) is under half the window the error states, as when a server's
        own tool loop grew the prompt; the sizes and their sources are in the evidence.""",
        "context_overflow",
        inferred=True,
    ),
    _kind(
        "http_auth",
        "client",
        "error",
        "http",
        """The host answered 401 or 403: the key is missing, wrong or not allowed for this
        model.""",
        "auth_failed",
    ),
    _kind(
        "http_not_found",
        "client",
        "error",
        "http",
        """The host answered 404: the model id or the endpoint path does not exist there (often
        a served model name that differs from the one requested).""",
        "model_not_found",
    ),
    _kind(
        "http_invalid_response",
        "provider",
        "error",
        "http",
        """The host answered 200 with something that is not a chat completion (an error object,
        HTML, no `choices`) or not strict JSON (NaN, 1e999, nesting too deep to parse), so
        strict clients crash.""",
        "error_with_status_200",
    ),
    _kind(
        "http_other",
        "provider",
        "error",
        "http",
        """An HTTP failure of no known class (402 credits, 413, an unusual status); the status
        and message are in the evidence.""",
        "unclassified_http_error",
    ),
    # -- ids ---------------------------------------------------------------------------------
    _kind(
        "tool_call_id_missing",
        "provider",
        "warning",
        "ids",
        """The call came without an id (or an empty one); its result cannot be paired back, and
        many hosts reject the next request.""",
        "tool_call_id_missing",
    ),
    _kind(
        "tool_call_id_format",
        "provider",
        "warning",
        "ids",
        """Ids are not in the form the model family or the dialect expects. Where the family's
        own parser rejects them (Kimi K2 wants `functions.NAME:IDX`, gets `call_2`) it is an
        error with that pattern in the evidence and the step it began at: the next turns break.""",
        "tool_call_id_format_wrong",
        "family_rejects_host_ids",
    ),
    _kind(
        "duplicate_tool_call_id",
        "provider",
        "error",
        "ids",
        """An id was used twice, in one turn or across turns (`list_dir:0` every turn), or
        is one the request's history already holds (as the client sent it back): results pair
        with the wrong call and hosts answer 400.""",
        "tool_call_id_reused",
    ),
    # -- the model's behaviour over the run --------------------------------------------------
    _kind(
        "repeated_call",
        "model",
        "warning",
        "loops",
        """The model made exactly the same calls three or more steps in a row, usually because
        it ignores or misreads the result: a loop that burns the step budget.""",
        "identical_tool_call_loop",
    ),
    _kind(
        "repeated_call_once",
        "model",
        "info",
        "loops",
        """The model made exactly the calls of its previous step once more (two in a row, not
        a loop): often a retry after a failure, otherwise a result it did not read.""",
        "identical_tool_call_loop",
    ),
    _kind(
        "tool_error",
        "tool",
        "error",
        "tools",
        """A tool execution failed. The tool's when it crashed or timed out; the model's when
        the tool rightly refused the call (an id, document or path that does not exist, a
        path outside the sandbox, off the schema); the host's when its parser broke the call.
        A warning when a later call to that tool succeeded.""",
        "tool_failed",
        inferred=True,
    ),
    # -- reasoning ---------------------------------------------------------------------------
    _kind(
        "reasoning_swallows_answer",
        "provider",
        "error",
        "reasoning",
        """The turn has no content and no call, and everything generated sits in the reasoning:
        the host's reasoning parser never saw the end of thinking (Kimi on Dynamo with
        skip_special_tokens), so the answer is hidden.""",
        "reasoning_swallows_answer",
    ),
    _kind(
        "empty_turn_after_reasoning",
        "provider",
        "error",
        "reasoning",
        """Mid-chain, after the first turn, the model thought, stopped mid-sentence with
        finish_reason `stop`, and neither answered nor called: typical of a host whose
        template renders the history wrong. Inferred from the cut-off reasoning.""",
        "empty_turn_after_reasoning",
        inferred=True,
    ),
    _kind(
        "reasoning_in_content",
        "provider",
        "warning",
        "reasoning",
        """The reasoning arrived inside content: a `<think>` block where the host promises a
        field, text ended by a lone `</think>` (the prompt opened the tag), or reasoning tokens
        billed with none surfaced. The host ran without a reasoning parser.""",
        "reasoning_field_location",
        "reasoning_close_tag_only",
        inferred=True,
    ),
    _kind(
        "reasoning_tokens_missing",
        "provider",
        "info",
        "reasoning",
        """Reasoning is present but usage does not report its tokens (or reports 0); costs and
        lengths are estimated, not measured. One finding per run and way of leaving them out,
        at the first such step, with how many steps it pools and their estimated tokens.""",
        "reasoning_tokens_unreported",
    ),
    _kind(
        "reasoning_tokens_outside_completion",
        "provider",
        "warning",
        "reasoning",
        """Reported reasoning tokens exceed completion tokens, or total exceeds prompt plus
        completion: reasoning is counted outside completion, which skews cost comparisons.""",
        "reasoning_tokens_outside_completion",
    ),
    # -- what the host kept of the history (the ledger) --------------------------------------
    _kind(
        "reasoning_dropped_in_chain",
        "provider",
        "warning",
        "kept",
        """The reasoning sent back inside a tool chain did not reach the model: fitted over the
        run's steps, prompt_tokens grew by the assistant turns, tool results and template
        overhead but not by the reasoning (or by the newest turn's only). A proxy or server
        dropped or ignored the field. Evidence: the behaviour, the retained share, the posterior
        of each behaviour and the fit.""",
        "reasoning_dropped_in_history",
        inferred=True,
    ),
    _kind(
        "tool_results_dropped",
        "provider",
        "error",
        "kept",
        """The tool results sent back did not reach the model: prompt_tokens grew by the
        assistant turns and their reasoning but not by the results (a chat template with no
        branch for the `tool` role). The model answers without seeing what its calls returned,
        and its failures look like its own.""",
        "tool_results_dropped_in_history",
        inferred=True,
    ),
    _kind(
        "tool_results_truncated",
        "provider",
        "warning",
        "kept",
        """Each tool result reached the model only up to some length: prompt_tokens grew by
        every short result in full and by long ones only up to the same cap (a gateway or
        server limiting tool output). Evidence: the cap in estimated tokens and the share
        kept.""",
        "tool_results_truncated_in_history",
        inferred=True,
    ),
    _kind(
        "history_lost",
        "provider",
        "warning",
        "kept",
        """Part of the history sent back did not reach the model, the reasoning or the tool
        results, and the counts cannot say which: both add about the same tokens on every step,
        so either loss explains the growth. Evidence: each hypothesis' posterior and the fit;
        reported only where neither part's own finding is.""",
        "reasoning_dropped_in_history",
        "tool_results_dropped_in_history",
        inferred=True,
    ),
    _kind(
        "history_rewritten",
        "provider",
        "warning",
        "kept",
        """The history reached the model rewritten: prompt_tokens grew by a few tokens more for
        each `<`, `>`, `&` or quote in what was sent than the parts explain, as a template with
        HTML autoescape on (`<` -> `&lt;`, `"` -> `&#34;`) renders them. Code, JSON and
        comparisons read differently to the model.""",
        "history_rewritten",
        inferred=True,
    ),
    _kind(
        "hidden_system_prompt",
        "provider",
        "warning",
        "kept",
        """The first request counted far more tokens than everything sent (messages and tool
        declarations), beyond what any chat template adds and the tokenizer's margin, and the
        steps after it grow as sent: the host puts a prompt of its own before the client's
        messages, on every request.""",
        "hidden_system_prompt",
        inferred=True,
    ),
    # -- history (the requests the client sent) ---------------------------------------------
    _kind(
        "tool_result_unmatched_id",
        "client",
        "error",
        "history",
        """A tool message's tool_call_id matches no call in the request; hosts answer 400
        ("messages with role 'tool' must be a response to a preceding message with
        'tool_calls'").""",
        "tool_result_orphaned",
    ),
    _kind(
        "tool_call_unanswered",
        "client",
        "warning",
        "history",
        """A call in the request has no tool message answering it; OpenAI-compatible hosts
        answer 400 ("tool_call_ids did not have response messages").""",
        "tool_call_unanswered",
    ),
    # -- sampling parameters (the answer against what its request asked) ---------------------
    _kind(
        "max_tokens_ignored",
        "provider",
        "warning",
        "sampling",
        """Completion tokens ran past the request's max_tokens (or max_completion_tokens): the
        host dropped the budget, so it bounds neither cost nor time. Without usage, or when
        only the reasoning ran past it, the confidence says how sure.""",
        inferred=True,
    ),
    _kind(
        "stop_ignored",
        "provider",
        "warning",
        "sampling",
        """The answer contains one of the request's stop sequences: the host accepted `stop`
        and did not end the text there.""",
    ),
    _kind(
        "n_ignored",
        "provider",
        "warning",
        "sampling",
        """Fewer choices came back than the request's `n` asked for, with no error: the host
        silently serves one.""",
    ),
    _kind(
        "logprobs_ignored",
        "provider",
        "warning",
        "sampling",
        """The request asked for logprobs (and top_logprobs) and the answer carries none, or
        fewer alternatives per token, with no error.""",
    ),
    _kind(
        "response_format_ignored",
        "provider",
        "error",
        "sampling",
        """The request asked for JSON (`response_format` json_object or json_schema) and the
        answer is not a JSON object, or breaks the strict schema: the host did not constrain
        the output, so the client's parser fails.""",
    ),
    _kind(
        "nondeterministic_output",
        "provider",
        "warning",
        "sampling",
        """Equal requests with temperature 0 or a seed got different answers. Answers that
        part at once mean the host ignored both; parting late is more likely batched
        floating-point noise, so the confidence falls with the identical prefix.""",
        inferred=True,
    ),
)

KINDS: dict[str, KindInfo] = {entry.kind: entry for entry in _ENTRIES}
"""Every finding kind, by name."""


def describe(kind: str) -> str | None:
    """The description of `kind`, or None for a kind this version does not know."""
    info = KINDS.get(kind)
    return info.description if info else None


def catalogue_rows() -> list[dict[str, Any]]:
    """The catalogue as rows for `traces failures --kinds`, in a stable reading order."""
    return [
        {
            "kind": info.kind,
            "layer": info.layer,
            "severity": info.severity,
            "inferred": info.inferred,
            "check": info.check,
            "description": info.description,
            "covers": list(info.covers),
        }
        for info in KINDS.values()
    ]
