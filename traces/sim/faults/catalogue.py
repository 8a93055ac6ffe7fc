"""The fault catalogue: every failure the simulator can inject, by name.

Names are a contract: the checks map their findings to them, and responses list the faults
they carry in `x-sim-faults`. Within a stage, faults apply in catalogue order.
"""

from __future__ import annotations

from traces.sim.faults import (
    behaviour,
    calls,
    echo,
    finish,
    history,
    http,
    later,
    reasoning,
    request,
    sampling,
    stream,
    transport,
    unparsed,
)
from traces.sim.faults.base import (
    Fault,
    PromptFault,
    ReplyFault,
    RequestFault,
    SamplingFault,
    StreamFault,
    WireFault,
)

_CATALOGUE: list[Fault] = [
    # The model's own decisions come first: host faults then act on what it decided.
    ReplyFault(
        "repeated_call",
        "The model makes exactly the calls of its previous turn again instead of acting on "
        "their results: a loop. Requests whose last assistant turn made calls.",
        "model",
        behaviour.repeated_call,
    ),
    ReplyFault(
        "repeated_call_once",
        "The model makes the calls of its previous turn once more, then moves on (never two "
        "repeats in a row). Requests whose last assistant turn made calls.",
        "model",
        behaviour.repeated_call_once,
    ),
    ReplyFault(
        "misnamed_argument",
        "The model misnames the first argument (`box_id` -> `id`, `path` -> `file_path`), the "
        "tool refuses the call and the model's next turn gets it right. Tool turns with "
        "arguments that do not follow a failed call.",
        "model",
        behaviour.misnamed_argument,
    ),
    ReplyFault(
        "invented_id",
        "The model makes up the id its first call names (`box-…-x`, `doc-…-x`): the tool "
        "answers that it does not exist and the model's next turn uses the real one. Tool "
        "turns whose first argument is an id, that do not follow a failed call.",
        "model",
        behaviour.invented_id,
    ),
    ReplyFault(
        "hallucinated_tool",
        "Beside its calls, the model calls a tool nobody declared (`toolbox.web.answer`, "
        "`browser.search`). Tool turns only.",
        "model",
        calls.hallucinated_tool,
    ),
    # The host's own: acts on the turn the model decided, before anything else rewrites it.
    ReplyFault(
        "tool_choice_ignored",
        "The host ignores the request's tool_choice: the model's unconstrained turn goes out "
        "(an answer where `required` or a named function asked for a call, calls where "
        "`none` allowed none). Requests whose tool_choice changed the turn.",
        "provider",
        calls.tool_choice_ignored,
    ),
    ReplyFault(
        "leaked_tokens_content",
        "Calls rendered as the family's raw tool-call tokens inside content; no tool_calls, "
        "finish_reason stop. Tool turns only.",
        "provider",
        calls.leaked_tokens_content,
    ),
    ReplyFault(
        "leaked_tokens_reasoning",
        "The family's tool-call tokens also appear inside the reasoning; the structured calls "
        "stay. Tool turns only.",
        "provider",
        calls.leaked_tokens_reasoning,
    ),
    ReplyFault(
        "foreign_call_tags",
        "The model writes its calls as Hermes `<tool_call>` JSON blocks in content, a syntax "
        "its family's template does not use (Kimi, DeepSeek, MiniMax, gpt-oss); no "
        "tool_calls, finish_reason stop. Tool turns of those families.",
        "model",
        calls.foreign_call_tags,
    ),
    ReplyFault(
        "tool_call_as_text",
        "Calls written as JSON text in content; no tool_calls, finish_reason stop. "
        "Tool turns only.",
        "model",
        calls.tool_call_as_text,
    ),
    ReplyFault(
        "dropped_call",
        "Calls silently dropped: empty content, finish_reason stop, completion_tokens still "
        "counted. Tool turns only.",
        "provider",
        calls.dropped_call,
    ),
    ReplyFault(
        "invalid_json_arguments",
        "The model writes its first call's arguments as invalid JSON (closing brace lost) and "
        "the host delivers them as written, finish_reason tool_calls, usage counting them. "
        "Tool turns only.",
        "model",
        calls.invalid_json_arguments,
    ),
    ReplyFault(
        "wrong_type_arguments",
        "The first argument of the first call has the wrong JSON type (valid JSON, "
        "schema-invalid). Tool turns with arguments only.",
        "model",
        calls.wrong_type_arguments,
    ),
    ReplyFault(
        "emptied_arguments",
        "The first call's arguments emptied to `{}` although its tool has required parameters "
        "(GLM on vLLM). Tool turns with arguments only.",
        "provider",
        calls.emptied_arguments,
    ),
    ReplyFault(
        "late_emptied_arguments",
        'From the second turn on, the first call\'s arguments arrive as `""` although its tool '
        "has required parameters (a template that renders the history wrong). Later tool "
        "turns with arguments only.",
        "provider",
        later.late_emptied_arguments,
    ),
    ReplyFault(
        "tag_in_name",
        "A piece of the call format in the first call's name (`open_box<|tool_call_end|>`, "
        "`functions.open_box:0`). Tool turns only.",
        "provider",
        calls.tag_in_name,
    ),
    ReplyFault(
        "tag_in_key",
        "A tag of the argument format in the first argument's key (`path</arg_key>`). "
        "Tool turns with arguments only.",
        "provider",
        calls.tag_in_key,
    ),
    ReplyFault(
        "object_arguments",
        "Arguments sent as JSON objects instead of JSON strings. Tool turns only.",
        "provider",
        calls.object_arguments,
    ),
    ReplyFault(
        "rewritten_ids",
        "Ids in the other style (`call_…` where Kimi's `functions.NAME:IDX` is expected, or "
        "vice versa). Tool turns only.",
        "provider",
        calls.rewritten_ids,
    ),
    ReplyFault(
        "late_rewritten_ids",
        "From the second turn on, ids in the other style (`call_…` for Kimi, whose parser "
        "rejects them). Later tool turns only.",
        "provider",
        later.late_rewritten_ids,
    ),
    ReplyFault(
        "duplicated_ids",
        "Two calls share an id, or a single call reuses the last id of the history. Tool "
        "turns with two calls or with earlier calls only.",
        "provider",
        calls.duplicated_ids,
    ),
    ReplyFault(
        "missing_ids",
        "Calls carry no id. Tool turns only.",
        "provider",
        calls.missing_ids,
    ),
    ReplyFault(
        "finish_stop_with_calls",
        "finish_reason stop although the turn has tool calls. Tool turns only.",
        "provider",
        finish.finish_stop_with_calls,
    ),
    ReplyFault(
        "finish_tool_calls_without_calls",
        "finish_reason tool_calls on an answer without calls. Answer turns only.",
        "provider",
        finish.finish_tool_calls_without_calls,
    ),
    ReplyFault(
        "finish_length_with_calls",
        "finish_reason length although the calls are complete. Tool turns only.",
        "provider",
        finish.finish_length_with_calls,
    ),
    ReplyFault(
        "finish_length_hidden",
        "completion_tokens equal max_tokens but finish_reason stays tool_calls (vLLM, a turn "
        "cut after its call parsed). Tool turns of requests with max_tokens and usage.",
        "provider",
        finish.finish_length_hidden,
    ),
    # Stream hooks that tell calls apart by `index` come before those that alter it.
    StreamFault(
        "stream_fields_repeated",
        "id, type and name repeated in every tool-call delta. Streamed tool turns only.",
        "provider",
        stream.stream_fields_repeated,
    ),
    StreamFault(
        "stream_id_repeated",
        "id and type (not the name) repeated in every tool-call delta. Streamed tool turns only.",
        "provider",
        stream.stream_id_repeated,
    ),
    StreamFault(
        "stream_id_changed",
        "Every delta after a call's opening one carries a different id. Streamed tool turns only.",
        "provider",
        stream.stream_id_changed,
    ),
    StreamFault(
        "stream_arguments_cumulative",
        "Argument deltas carry everything so far instead of the new piece. Streamed tool "
        "turns only.",
        "provider",
        stream.stream_arguments_cumulative,
    ),
    StreamFault(
        "stream_arguments_object",
        "Each call arrives whole in one delta with its arguments as a JSON object (Z.ai, "
        "Ollama behind LiteLLM). Streamed tool turns only.",
        "provider",
        stream.stream_arguments_object,
    ),
    StreamFault(
        "stream_index_split",
        "Two tool-call entries with the same index in one chunk. Streamed tool turns only.",
        "provider",
        stream.stream_index_split,
    ),
    StreamFault(
        "stream_index_collision",
        "Parallel calls all streamed under index 0 (Dynamo, Ollama); index-keyed clients merge "
        "them into one call with `{..}{..}` arguments. Streamed turns with two or more calls.",
        "provider",
        stream.stream_index_collision,
    ),
    StreamFault(
        "stream_index_from_one",
        "Tool-call indices start at 1. Streamed tool turns only.",
        "provider",
        stream.stream_index_from_one,
    ),
    StreamFault(
        "stream_index_missing",
        "Tool-call deltas have no index. Streamed tool turns only.",
        "provider",
        stream.stream_index_missing,
    ),
    StreamFault(
        "stream_finish_twice",
        "One more chunk with finish_reason stop after the finish chunk (Dynamo). Streams not "
        "finished by stop.",
        "provider",
        stream.stream_finish_twice,
    ),
    StreamFault(
        "stream_content_with_reasoning",
        "The first piece of content rides in the last reasoning delta (vLLM's DeepSeek-style "
        "parsers at `</think>`). Streamed turns with reasoning in a field and content.",
        "provider",
        stream.stream_content_with_reasoning,
    ),
    StreamFault(
        "stream_single_chunk",
        "The host buffers the generation: all reasoning in one delta, all content in one "
        "(CLIProxyAPI). Streams with 120 characters or more of reasoning or content.",
        "provider",
        stream.stream_single_chunk,
    ),
    StreamFault(
        "stream_split_utf8",
        "A multi-byte character cut between two chunks, each half decoded alone: U+FFFD ends "
        "one delta and starts the next (vllm-mlx). Streams with text.",
        "provider",
        stream.stream_split_utf8,
    ),
    RequestFault(
        "reasoning_required_400",
        "HTTP 400 (DeepSeek's body) when a tool-call turn after the last user message comes "
        "back without reasoning the dialect reads. Such requests only.",
        "provider",
        request.reasoning_required_400,
    ),
    RequestFault(
        "rate_limit_429",
        "HTTP 429 with retry-after. Any request.",
        "provider",
        request.rate_limit_429,
    ),
    RequestFault(
        "server_error_5xx",
        "HTTP 500, 502 (an HTML proxy page) or 503. Any request.",
        "provider",
        request.server_error_5xx,
    ),
    RequestFault(
        "timeout",
        "The response is held for timeout_s seconds, then sent. Any request.",
        "provider",
        request.timeout,
    ),
    RequestFault(
        "auth_echoed_in_error",
        "HTTP 401 quoting the refused Authorization header whole in its error message, body "
        "and x-request-id (a gateway; OpenAI masks it). Requests with a key.",
        "provider",
        echo.auth_echoed_in_error,
    ),
    RequestFault(
        "unauthorized_401",
        "HTTP 401 (OpenRouter's `No auth credentials found`). Any request.",
        "provider",
        http.unauthorized_401,
    ),
    RequestFault(
        "payment_required_402",
        "HTTP 402: more credits needed for the max_tokens asked (OpenRouter). Any request.",
        "provider",
        http.payment_required_402,
    ),
    RequestFault(
        "model_not_found_404",
        "HTTP 404: the requested model does not exist on the host (vLLM's body). Any request.",
        "provider",
        http.model_not_found_404,
    ),
    RequestFault(
        "bad_request_400",
        "HTTP 400 `Unrecognized request argument supplied: tools` (an Azure OpenAI API version "
        "without tools). Requests with tools.",
        "provider",
        http.bad_request_400,
    ),
    RequestFault(
        "template_error_400",
        "HTTP 400: the served chat template does not compile (vLLM's Jinja `expected token` "
        "message). Any request.",
        "provider",
        http.template_error_400,
    ),
    RequestFault(
        "template_error_500",
        "HTTP 500: the chat template raised while rendering (llama-cpp-python quoting Jinja's "
        "`'dict object' has no attribute 'name'` bare). Requests with a tool result that has "
        "no `name`.",
        "provider",
        http.template_error_500,
    ),
    RequestFault(
        "argument_type_error_500",
        "HTTP 500: GLM's template on llama.cpp raises on history arguments that are not a "
        "mapping. Requests with tool-call arguments sent back as JSON strings.",
        "provider",
        http.argument_type_error_500,
    ),
    RequestFault(
        "context_overflow_400",
        "HTTP 400: the request does not fit the context window (vLLM's message: messages "
        "plus the asked max_tokens, or the messages alone, over a window just below them). "
        "The client's request overflowed it. Any request.",
        "provider",
        http.context_overflow_400,
    ),
    RequestFault(
        "host_context_overflow_400",
        "HTTP 400: llama-cpp-python's context message answering a request under a tenth of "
        "its 8192-token window: the server's own tool loop grew the prompt past it. Requests "
        "under 819 tokens.",
        "provider",
        http.host_context_overflow_400,
    ),
    RequestFault(
        "invalid_response_200",
        "HTTP 200 whose JSON body is an error object, not a completion, even for a stream "
        "(RunPod's vLLM worker). Any request.",
        "provider",
        http.invalid_response_200,
    ),
    ReplyFault(
        "auth_echoed",
        "The Authorization header comes back in x-request-id, the reasoning and an answer's "
        "content (a gateway's debug output). Requests with a key.",
        "provider",
        echo.auth_echoed,
    ),
    ReplyFault(
        "reasoning_swallows_answer",
        "The final answer appears only inside the reasoning; content empty. Answer turns only.",
        "provider",
        reasoning.reasoning_swallows_answer,
    ),
    ReplyFault(
        "reasoning_in_content",
        "Reasoning text dumped into content; no reasoning field. Turns with reasoning.",
        "provider",
        reasoning.reasoning_in_content,
    ),
    ReplyFault(
        "reasoning_close_tag_only",
        "The prompt opened `<think>` and no reasoning parser ran: content holds the reasoning, "
        "a lone `</think>`, then the answer. Turns with reasoning.",
        "provider",
        unparsed.reasoning_close_tag_only,
    ),
    ReplyFault(
        "harmony_in_content",
        "gpt-oss served without the harmony parser: every channel, calls as commentary "
        "messages, in content; no reasoning field or tool_calls, finish_reason stop. Any "
        "completion.",
        "provider",
        unparsed.harmony_in_content,
    ),
    ReplyFault(
        "harmony_stripped",
        "As harmony_in_content through a detokenizer that skips special tokens: only the words "
        "are left (`analysis…assistantfinal…`). Turns with reasoning.",
        "provider",
        unparsed.harmony_stripped,
    ),
    ReplyFault(
        "late_empty_turn",
        "From the second turn on, a tool turn stops mid-sentence in its reasoning: no content, "
        "no calls, finish_reason stop, only the reasoning counted. Later tool turns with "
        "reasoning.",
        "provider",
        later.late_empty_turn,
    ),
    ReplyFault(
        "reasoning_tokens_missing",
        "usage without completion_tokens_details.reasoning_tokens. Responses with usage.",
        "provider",
        reasoning.reasoning_tokens_missing,
    ),
    ReplyFault(
        "reasoning_tokens_outside_completion",
        "Reasoning tokens not included in completion_tokens (total_tokens still counts them). "
        "Responses with usage.",
        "provider",
        reasoning.reasoning_tokens_outside_completion,
    ),
    PromptFault(
        "reasoning_dropped_from_history",
        "The template ignores all history reasoning, as a host that strips it does "
        "(prompt_tokens shrink). Requests with reasoning the template would keep.",
        "provider",
        reasoning.reasoning_dropped_from_history,
    ),
    PromptFault(
        "reasoning_kept_last_only",
        "The template keeps only the latest assistant turn's reasoning, so every request "
        "re-renders the turn before without it (cached tokens fall). Requests with two or more "
        "turns whose reasoning the template would keep.",
        "provider",
        reasoning.reasoning_kept_last_only,
    ),
    PromptFault(
        "tool_results_dropped",
        "The template renders no tool result (a llama.cpp template with no branch for the "
        "`tool` role): the model never sees what its calls returned and prompt_tokens grow by "
        "the assistant turns only. Requests with tool results.",
        "provider",
        history.tool_results_dropped,
    ),
    PromptFault(
        "tool_results_truncated",
        "Each tool result is cut to its first 256 characters before the template runs (a "
        "proxy limiting tool output). Requests with a longer result.",
        "provider",
        history.tool_results_truncated,
    ),
    PromptFault(
        "history_html_escaped",
        "The template runs with autoescape on: every message's text (reasoning, content, "
        'string arguments, tool results) is HTML-escaped (`<` -> `&lt;`, `"` -> `&#34;`), so '
        "the prompt grows by more than was sent. Requests with such characters.",
        "provider",
        history.history_html_escaped,
    ),
    PromptFault(
        "arguments_reencoded",
        "The template JSON-encodes string arguments of earlier calls a second time "
        '(`arguments|tojson`, as llama.cpp\'s old Kimi K2 template does): `"{\\"path\\": '
        '...}"`. Requests with string arguments in the history.',
        "provider",
        history.arguments_reencoded,
    ),
    PromptFault(
        "system_prompt_injected",
        "The host puts a hidden system prompt of its own (about 450 tokens) before the "
        "client's messages: every prompt_tokens is that much above what was sent. Any request.",
        "provider",
        history.system_prompt_injected,
    ),
    # Before the faults that break events: these read every chunk as JSON.
    WireFault(
        "usage_omitted",
        "No usage although the request asked for it: the body without `usage`, the stream "
        "without its usage chunk (a gateway that drops it). Responses with usage.",
        "provider",
        transport.usage_omitted,
    ),
    WireFault(
        "stream_usage_every_chunk",
        "Usage in every chunk with running counts, unasked (vLLM's continuous_usage_stats, a "
        "llama-server change); the final usage chunk stays. Streams with include_usage.",
        "provider",
        transport.stream_usage_every_chunk,
    ),
    WireFault(
        "stream_broken_chunk",
        "An error object written into an unfinished event: the first event with text is not "
        "JSON and its text is lost (a gateway, sub2api). Streams with text.",
        "provider",
        transport.stream_broken_chunk,
    ),
    WireFault(
        "stream_truncated",
        "The stream ends early but cleanly: last piece cut in half (mid-call on tool turns), "
        "no finish_reason, usage or [DONE]. Streams only.",
        "provider",
        transport.stream_truncated,
    ),
    WireFault(
        "empty_response",
        "HTTP 200 with nothing generated: a stream of only `data: [DONE]`, or a completion "
        "with `choices: []` and no completion token (the host failed before its first token). "
        "Any completion.",
        "provider",
        transport.empty_response,
    ),
    WireFault(
        "endless_response",
        "The response never ends: a stream repeats its last piece every 50 ms with no "
        "finish_reason or [DONE]; a JSON body is only keep-alive spaces. Any completion.",
        "provider",
        transport.endless_response,
    ),
    WireFault(
        "non_json_numbers",
        "Usage written with NaN, 1e999 and -Infinity: the body, or the stream's usage chunk, "
        "is not strict JSON. Any completion.",
        "provider",
        transport.non_json_numbers,
    ),
    WireFault(
        "deeply_nested_json",
        "Usage nested 100,000 arrays deep: the body, or the stream's usage chunk, is beyond "
        "any parser's recursion limit. Any completion.",
        "provider",
        transport.deeply_nested_json,
    ),
    WireFault(
        "connection_reset",
        "The connection drops halfway through the response body or stream. Any completion.",
        "provider",
        transport.connection_reset,
    ),
    # Sampling parameters a host silently ignores (Moonshot's vendor verifier checks them).
    SamplingFault(
        "max_tokens_ignored",
        "max_tokens not enforced: the turn runs past the budget and ends on its own "
        "(completion_tokens above it, finish_reason stop). Requests whose turn exceeds it.",
        "provider",
        sampling.max_tokens_ignored,
        "max_tokens",
    ),
    SamplingFault(
        "stop_ignored",
        "stop sequences not enforced: the text runs on through them. Requests whose turn "
        "generates one.",
        "provider",
        sampling.stop_ignored,
        "stop",
    ),
    SamplingFault(
        "n_ignored",
        "One choice comes back whatever n asked for. Requests with n above 1.",
        "provider",
        sampling.n_ignored,
        "n",
    ),
    SamplingFault(
        "logprobs_ignored",
        "logprobs null although the request asked for them. Requests with logprobs.",
        "provider",
        sampling.logprobs_ignored,
        "logprobs",
    ),
    SamplingFault(
        "response_format_ignored",
        "A plain-text answer whatever response_format (json_object, json_schema) asked for. "
        "Answer turns of requests with a JSON format.",
        "provider",
        sampling.response_format_ignored,
        "response_format",
    ),
    SamplingFault(
        "seed_ignored",
        "seed and temperature 0 not honoured: each request is sampled anew, so the same "
        "request twice gets different words. Requests with a seed or temperature 0.",
        "provider",
        sampling.seed_ignored,
        "seed",
    ),
]

FAULTS: dict[str, Fault] = {fault.name: fault for fault in _CATALOGUE}
"""Every fault by name, in catalogue order."""
