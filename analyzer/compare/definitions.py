"""Every metric of a comparison: its name, what it means, and the statistic behind it.

Each metric is a statistic over a group's runs (see `stats`) that names per-run columns of
`metrics.RunTable` (or the derived ones `build` adds), so one definition serves the point
estimate, the bootstrap interval and the significance test alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from analyzer.compare.model import Section, Unit
from analyzer.compare.stats import F1, Mean, Quantile, Ratio, Statistic


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how it reads, and the statistic over a group's run columns behind it."""

    key: str
    label: str
    section: Section
    unit: Unit
    better: Literal["higher", "lower"] | None
    description: str
    statistic: Statistic


METRICS: list[MetricSpec] = [
    MetricSpec(
        "success_rate",
        "task success",
        "outcome",
        "rate",
        "higher",
        "Runs whose final answer passed the task's success check / finished runs whose "
        "success is known (a run the model ended without an answer failed; one the endpoint "
        "ended, or an imported one nothing judged, is left out and counted in a note).",
        Ratio("success", "success_known"),
    ),
    MetricSpec(
        "completion_rate",
        "final answer given",
        "outcome",
        "rate",
        "higher",
        "Runs that ended with a final answer (termination `completed`) / finished runs (an "
        "interrupted run has no outcome and is left out).",
        Ratio("completed", "finished"),
    ),
    MetricSpec(
        "provider_error_rate",
        "ended by provider error",
        "outcome",
        "rate",
        "lower",
        "Runs whose end the evidence lays on the host / finished runs: the layer of the error "
        "found on the run's last step, else the termination's own (`provider_error`: an "
        "endpoint failure after retries). A second turn the host's template emptied ends "
        "`model_error` and counts; a 400 for reasoning the client dropped does not.",
        Ratio("provider_error", "finished"),
    ),
    MetricSpec(
        "steps_median",
        "steps to finish, median",
        "outcome",
        "steps",
        "lower",
        "Median model calls of the runs that ended with a final answer.",
        Quantile("steps_to_finish", 0.5),
    ),
    MetricSpec(
        "steps_p90",
        "steps to finish, p90",
        "outcome",
        "steps",
        "lower",
        "90th percentile of model calls of the runs that ended with a final answer.",
        Quantile("steps_to_finish", 0.9),
    ),
    MetricSpec(
        "tool_call_json_validity",
        "tool-call JSON valid",
        "tool_calls",
        "rate",
        "higher",
        "Tool calls whose arguments parse as a JSON object / tool calls.",
        Ratio("json_valid_calls", "calls"),
    ),
    MetricSpec(
        "schema_accuracy",
        "schema_accuracy (K2VV)",
        "tool_calls",
        "rate",
        "higher",
        "K2-Vendor-Verifier's schema_accuracy: responses that finished with tool_calls and "
        "whose every call names a declared tool with valid JSON arguments that satisfy its "
        "schema / responses that finished with tool_calls.",
        Ratio("tool_calls_responses_valid", "tool_calls_responses"),
    ),
    MetricSpec(
        "tool_call_f1",
        "tool_call_f1 vs reference (K2VV)",
        "tool_calls",
        "rate",
        "higher",
        "K2-Vendor-Verifier's tool_call_f1: agreement with the reference on whether a response "
        "finishes with tool_calls, over requests both answered (paired by request hash); "
        "F1 = 2·TP / (2·TP + FP + FN).",
        F1(),
    ),
    MetricSpec(
        "invalid_json_rate",
        "invalid_json per call",
        "tool_calls",
        "rate",
        "lower",
        "Calls whose arguments do not parse as a JSON object / tool calls (OpenRouter's "
        "InvalidJson).",
        Ratio("invalid_json", "calls"),
    ),
    MetricSpec(
        "unknown_name_rate",
        "unknown_name per call",
        "tool_calls",
        "rate",
        "lower",
        "Calls with valid JSON naming no tool of the request / tool calls (OpenRouter's "
        "UnknownName).",
        Ratio("unknown_name", "calls"),
    ),
    MetricSpec(
        "schema_mismatch_rate",
        "schema_mismatch per call",
        "tool_calls",
        "rate",
        "lower",
        "Calls to a declared tool with valid JSON that violates its schema / tool calls "
        "(OpenRouter's SchemaMismatch).",
        Ratio("schema_mismatch", "calls"),
    ),
    MetricSpec(
        "tool_call_error_rate",
        "responses with a bad call",
        "tool_calls",
        "rate",
        "lower",
        "Responses with at least one call in an error class / responses with calls "
        "(OpenRouter's request-level Tool Call Error Rate).",
        Ratio("errored_call_steps", "call_steps"),
    ),
    MetricSpec(
        "reasoning_returned",
        "responses with reasoning",
        "reasoning",
        "rate",
        None,
        "Successful responses that carried reasoning text (any field) / successful responses.",
        Ratio("reasoning_steps", "ok_steps"),
    ),
    MetricSpec(
        "reasoning_retention",
        "reasoning retained in chains",
        "reasoning",
        "rate",
        "higher",
        "Reasoning tokens the host counted / reasoning tokens sent back, summed over the "
        "requests of each run's tool chain: the run's ledger fits how much of each part its "
        "prompt_tokens grew by, and its behaviour (all kept, the newest turn's only, none, a "
        "share) says what was kept; a run where no retention holds 0.7 of the probability "
        "is undecided and left out (runs: those measured).",
        Ratio("reasoning_kept_tokens", "reasoning_sent_tokens"),
    ),
    MetricSpec(
        "tool_result_retention",
        "tool results retained",
        "reasoning",
        "rate",
        "higher",
        "Tool-result tokens the host counted / tool-result tokens sent, summed over the "
        "requests of each run's tool chain, from the run's ledger (all kept, dropped, cut at "
        "a length, a share; within the tokenizer's margin on tool output; undecided runs "
        "left out, as above).",
        Ratio("tool_results_kept_tokens", "tool_results_sent_tokens"),
    ),
    MetricSpec(
        "ttft_ms",
        "time to first token, ms",
        "latency",
        "ms",
        "lower",
        "Median over runs of each run's median time to the first reasoning, content or "
        "tool-call chunk (streamed, successful responses).",
        Quantile("ttft_ms", 0.5),
    ),
    MetricSpec(
        "step_latency_ms",
        "step latency, ms",
        "latency",
        "ms",
        "lower",
        "Median over runs of each run's median time from request to the end of the response "
        "(successful responses).",
        Quantile("latency_ms", 0.5),
    ),
    MetricSpec(
        "output_tokens_per_s",
        "output tokens/s",
        "latency",
        "tokens_per_s",
        "higher",
        "Completion tokens / seconds of response latency, summed over successful responses "
        "that report usage.",
        Ratio("output_tokens", "output_seconds"),
    ),
    MetricSpec(
        "prompt_tokens_per_run",
        "prompt tokens per run",
        "tokens",
        "tokens",
        None,
        "Mean over runs of the prompt tokens the endpoint reported.",
        Mean("prompt_tokens"),
    ),
    MetricSpec(
        "completion_tokens_per_run",
        "completion tokens per run",
        "tokens",
        "tokens",
        None,
        "Mean over runs of the completion tokens (reasoning included) the endpoint reported.",
        Mean("completion_tokens"),
    ),
    MetricSpec(
        "cost_per_run_usd",
        "cost per run, USD",
        "tokens",
        "usd",
        "lower",
        "Mean over runs of (uncached prompt × input + cached × cached_input + completion × "
        "output) at the profile's prices per million tokens; the simulator costs 0; none "
        "when a run's provider and model have no listed price.",
        Mean("cost_usd"),
    ),
    MetricSpec(
        "findings_per_100_steps",
        "findings per 100 steps",
        "findings",
        "per_100_steps",
        "lower",
        "Findings of every kind × 100 / steps checked (all a run recorded, but only those "
        "checked for a run whose findings are so far).",
        Ratio("findings_total", "steps_checked", 100.0),
    ),
    MetricSpec(
        "provider_errors_per_100_steps",
        "host errors per 100 steps",
        "findings",
        "per_100_steps",
        "lower",
        "Findings of severity `error` that blame the host (layer `provider`: leaked tokens, "
        "dropped calls, broken streams…) × 100 / steps checked; 0 when there are none.",
        Ratio("provider_error_findings", "steps_checked", 100.0),
    ),
]
"""The fixed metrics, in display order (finding metrics per kind and layer follow)."""


def finding_metrics(dimension: Literal["kind", "layer"], name: str) -> list[MetricSpec]:
    """The two metrics of one finding kind or layer: per 100 steps, and share of runs."""
    what = f"`{name}` findings" if dimension == "kind" else f"findings of layer `{name}`"
    column = f"finding.{dimension}.{name}"
    return [
        MetricSpec(
            f"{column}.per_100_steps",
            f"{name} per 100 steps" if dimension == "kind" else f"layer {name} per 100 steps",
            "findings",
            "per_100_steps",
            "lower",
            f"{what.capitalize()} × 100 / steps checked.",
            Ratio(column, "steps_checked", 100.0),
        ),
        MetricSpec(
            f"{column}.runs_share",
            f"{name}: runs with ≥1" if dimension == "kind" else f"layer {name}: runs with ≥1",
            "findings",
            "rate",
            "lower",
            f"Runs with at least one of the {what} / finished runs.",
            Ratio(f"has.{column}", "finished"),
        ),
    ]
