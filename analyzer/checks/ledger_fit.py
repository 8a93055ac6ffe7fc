"""Fitting a run's ledger: how many of each added part's tokens the host counted.

The growth of each tool-chain step is explained as

    growth_i = output * O_i + newest_reasoning * (R_i - D_i) + older_reasoning * D_i
               + tool_results * T_i + per_result * n_i + per_turn
               [+ escaping * E_i + reencoding * Q_i]

(see `ledger_entries.Added` for the parts; the bracketed rewrites join the model only when
they explain the steps clearly better and by enough tokens per character). Hosts do not keep
arbitrary fractions of what they are sent: they keep the reasoning or strip it, keep only the
newest turn's, keep the tool results or lose them, cut them at some length. So besides the free
fit ("partial", which pays a penalty for each share it chooses), each such behaviour is a
hypothesis: the same fit with the share held where that behaviour puts it, every reasoning
behaviour fitted with every tool-result one (on a short run a result cut short can pass for
reasoning lost). Their misfits give each behaviour a posterior probability; the most probable
one is the verdict, its share the measured retention, and the probability of the behaviours
that lose tokens the confidence of a finding. A run whose steps cannot tell keeping from
dropping gets an even posterior, never a verdict that pretends otherwise.

Steps weigh by their noise: a few tokens of template jitter, plus a share of each estimated
part (the estimate is not the host's tokenizer). The run's own misfit rescales that noise
(`Fit.scale`): up whenever the fit cannot follow the steps, down only when many steps agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from analyzer.checks.ledger_entries import Added, Entry
from analyzer.checks.lsq import (
    Coefficient,
    Normal,
    Quadratic,
    Solution,
    bounded,
    extend_normal,
    normal_equations,
)

COEFFICIENTS: dict[str, Coefficient] = {
    c.name: c
    for c in (
        # The assistant turn comes back as the host generated it: its own count, give or take
        # the template re-rendering calls a little differently.
        Coefficient("output", 1.0, 0.1, 0.5, 1.5),
        # An estimated turn: the estimate misses the call markup, a tokenizer differs.
        Coefficient("estimated_output", 1.0, 0.3, 0.5, 2.5),
        # Flat within their range: whether the host kept the reasoning is what is measured.
        Coefficient("newest_reasoning", 1.0, 3.0, 0.0, 1.5),
        Coefficient("older_reasoning", 1.0, 3.0, 0.0, 1.5),
        # Tool output tokenizes differently from reasoning (code, JSON): a wide prior, up to
        # the most a tokenizer counts of it (`RESULTS_KEPT`). Beyond, the share took in what
        # the host added to the results (escaping them), which the rewrites' evidence must
        # be measured against, not absorbed into.
        Coefficient("tool_results", 1.0, 0.5, 0.0, 1.8),
        # Template tokens around each result and each turn: a few, rarely tens; never many
        # fewer than none (a turn re-rendered without its end-of-turn token, at most).
        Coefficient("per_result", 4.0, 6.0, -5.0, 80.0),
        Coefficient("per_turn", 4.0, 6.0, -10.0, 80.0),
        # Extra tokens per character an HTML-escaping template expands.
        Coefficient("escaping", 0.0, 2.0, 0.0, 8.0),
        # Extra tokens per quote of string arguments a template encodes a second time.
        Coefficient("reencoding", 0.0, 2.0, 0.0, 4.0),
        # Truncated tool results: the share counted of each result's head and of its tail.
        Coefficient("result_heads", 1.0, 0.5, 0.0, 3.0),
        Coefficient("result_tails", 1.0, 0.5, 0.0, 3.0),
    )
}
"""Every coefficient a model of the ledger may use: (name, prior, spread, low, high)."""

BASE = ("output", "estimated_output", "tool_results", "per_result", "per_turn")

OVERHEAD_PLAUSIBLE = COEFFICIENTS["per_turn"].prior + 3 * COEFFICIENTS["per_turn"].spread
"""Per-turn overhead (tokens) beyond which no template plausibly goes: a rewrite the steps
cannot tell from the overhead by its variation is told from it only when, without it, the
overhead would have to exceed this (here to try one at all, in `kept` to report it)."""

KEPT = (0.7, 1.4)
"""Range of a share that means "all of it counted" for an estimated part: the estimate's ratio
to the host's tokens is learned from the run, within the ±30% by which tokenizers differ."""
KEPT_COUNTED = (0.9, 1.15)
"""The same for reasoning the host counted itself: it comes back as it was generated, give or
take what the template does around it."""
GONE_SPLIT = (-0.3, 0.35)
"""Range of a dropped turn's share when the host counted the turn but not its reasoning apart
(`ReasoningBasis` "split"): the completion was split by the estimate, so a dropped reasoning
leaves one minus the ratio of the host's tokens to the split's, a little either side of 0."""
GONE = (0.0, 0.0)
RESULTS_KEPT = (0.65, COEFFICIENTS["tool_results"].high)
"""Tool output is never counted by the host in usage: its share is the host's tokens per
estimated token when all of it counts, which tokenizers put from two thirds (JSON's quotes and
brackets merged into few tokens) to nearly twice (digits, identifiers split up) the
estimate."""
TAIL_CUT = (0.0, 0.3)
"""Share of a result's tail that still counts when the host truncates tool results."""
PENALTY = 3.0
"""Misfit a behaviour pays for each share it is free to choose: a free fit always explains
the steps at least as well as a fixed behaviour, and must do clearly better to win. AIC's 2,
raised as small samples call for (a run has a handful of chain steps for as many
coefficients)."""
CAPS = (16, 32, 64, 128, 256, 512, 1024, 2048)
"""Truncation lengths tried, in estimated tokens per result."""

NOISE_FLOOR = 2.0
"""Tokens by which a template's rendering may vary from step to step, whatever was added."""
TOOL_NOISE = 0.06
"""Share of a tool result's estimated size a tokenizer may miscount beyond the run's ratio."""
OUTPUT_NOISE = 0.04
"""Share of a reported count the template's re-rendering may differ by."""
OUTLIER_Z = 6.0
"""Standardized residual beyond which a step is set aside (a retry, an edit, a fault)."""
MIN_FREEDOM = 5
"""Degrees of freedom below which a run's misfit is divided by this many instead: a misfit
of a few on a short run says little, one of thousands still says the host is inconsistent."""
MIN_SCALE = 0.25
"""Lowest noise scale (in variance) a run's own misfit may set: its steps fit far better
than assumed only when many agree."""
KEPT_SLACK = 1.0
"""Misfit (in units of the assumed noise, never of a run's inflated one) by which keeping
everything may trail the free fit and still be taken without trying the other behaviours:
none of them can then be much more probable."""
MAX_KEPT_SCALE = 3.0
"""Noise scale above which the steps are not taken for a faithful host without weighing the
other behaviours: something the free fit does not model (a cap on results) is going on."""
NEARLY_KEPT = 0.75
"""Share of a part below which the free fit is not taken for a host that kept it all without
weighing the other behaviours."""
MAX_FIT_STEPS = 128
"""Chain steps the fit reads at most, evenly spread over a longer run: enough to pool the
evidence, and the cost of a 300-step chain stays that of a short one."""


def noise(added: Added) -> float:
    """Standard deviation of a chain step's growth around what the ledger expects of it."""
    return math.sqrt(
        NOISE_FLOOR**2
        + (TOOL_NOISE * added.tool_results) ** 2
        + (OUTPUT_NOISE * added.output) ** 2
        + (OUTPUT_NOISE * added.reasoning) ** 2
    )


def _columns(added: Sequence[Added]) -> dict[str, list[float]]:
    return {
        "output": [a.output if a.output_counted else 0.0 for a in added],
        "estimated_output": [0.0 if a.output_counted else a.output for a in added],
        "newest_reasoning": [a.reasoning - a.demoted for a in added],
        "older_reasoning": [a.demoted for a in added],
        "tool_results": [a.tool_results for a in added],
        "per_result": [float(len(a.results)) for a in added],
        "per_turn": [1.0] * len(added),
        "escaping": [float(a.escapable) for a in added],
        "reencoding": [float(a.argument_quotes) for a in added],
    }


@dataclass(frozen=True)
class Behaviour:
    """One way the host may treat a part of the history, fitted to the run."""

    name: str
    solution: Solution
    retention: float
    """Share of that part's tokens the host counted under this behaviour."""
    penalty: float = 0.0
    posterior: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """The behaviours tried for one part of the history, most probable first."""

    behaviours: tuple[Behaviour, ...]

    @property
    def best(self) -> Behaviour:
        """The most probable behaviour."""
        return self.behaviours[0]

    def probability(self, *names: str) -> float:
        """Posterior probability that the host behaves as one of `names`."""
        return sum(b.posterior for b in self.behaviours if b.name in names)


@dataclass(frozen=True)
class Fit:
    """The ledger fitted over a run's chain steps."""

    normal: Normal
    model: tuple[Coefficient, ...]
    """The free model ("partial" for every share): what hypotheses hold fixed in turn."""
    free: Solution
    final: Solution
    """The verdicts' behaviours combined: the fit the ledger's expectations come from."""
    reasoning: Verdict | None
    tool_results: Verdict | None
    scale: float
    """Misfit per degree of freedom (at least `MIN_SCALE`; 1 when too few steps to tell)."""
    steps: tuple[int, ...]
    expected: tuple[float, ...]
    residuals: tuple[float, ...]
    noise: tuple[float, ...]
    set_aside: tuple[int, ...]
    extras: dict[str, float] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        """The final fit's value of coefficient `name` (None: the run does not inform it)."""
        return self.final.values.get(name)


def _spread(n: int) -> list[int]:
    """Indices of at most MAX_FIT_STEPS of n points, evenly spread, first and last kept."""
    if n <= MAX_FIT_STEPS:
        return list(range(n))
    step = (n - 1) / (MAX_FIT_STEPS - 1)
    return sorted({round(i * step) for i in range(MAX_FIT_STEPS)})


REWRITE_EVIDENCE = 10.8
"""Misfit reduction (chi-squared, 1 degree of freedom, p = 0.001) before a rewrite counts."""
REWRITES = {"escaping": 1.0, "reencoding": 0.6}
"""Rewrites of the history a fit looks for, with the extra tokens per character below which
no template did it (a tokenizer merging quotes differently from the estimate moves the
coefficient by a fraction of one): `escaping`, per character an HTML-escaping template
expands; `reencoding`, per quote of string arguments a template JSON-encodes again
(`"{\"path\": \".\"}"`, each inner quote escaped, two more around)."""


class _Unfitted:
    """What `_FITS` gives for inputs it does not hold (None is a fit's answer)."""


_UNFITTED = _Unfitted()
_FITS: dict[tuple[object, ...], Fit | None] = {}
"""Fits by their inputs, recent ones: see `fit_chain`."""
MAX_FITS = 256
"""Fits `_FITS` holds at most (cleared when full): about 17 KB each with the entries it keeps
alive, so a few MB; runs repeated in a store are mostly neighbours (one log imported again
is the next run ids)."""


def fit_chain(
    chain: Sequence[Entry],
    reasoning_sent: Sequence[tuple[float, float]],
    left_out: int | None = None,
    ruled_out: frozenset[str] = frozenset(),
) -> Fit | None:
    """Fit the ledger over the chain entries (at least two); `reasoning_sent` holds each
    entry's (newest turn's, older turns') reasoning in its request, for the retention.
    `left_out` is a chain position the fit ignores (to see whether one step decides it);
    `ruled_out` names behaviours other evidence excludes (not tried).

    The fit is a function of these arguments alone (entries are tuples of numbers), so a run
    whose entries equal an earlier one's takes that run's fit, the same object: the same
    log imported again, a deterministic simulator's runs of one task. Hashing the entries
    costs a hundredth of a fit; a fit is never mutated once made."""
    try:
        key = (tuple(chain), tuple(reasoning_sent), left_out, ruled_out)
        found = _FITS.get(key, _UNFITTED)
    except TypeError:  # an unhashable argument (a list where a tuple is expected)
        return _fit_chain(chain, reasoning_sent, left_out, ruled_out)
    if not isinstance(found, _Unfitted):
        return found
    fit = _fit_chain(chain, reasoning_sent, left_out, ruled_out)
    if len(_FITS) >= MAX_FITS:
        _FITS.clear()
    _FITS[key] = fit
    return fit


def _beyond_plausible(values: dict[str, float]) -> bool:
    """Whether a fit without rewrites put more on the template or the tool results than
    they plausibly take: a per-turn overhead above `OVERHEAD_PLAUSIBLE`, or the results'
    share at the most a tokenizer counts (beyond it, more is a rewrite's)."""
    results = COEFFICIENTS["tool_results"].high
    return (
        values.get("per_turn", 0.0) > OVERHEAD_PLAUSIBLE
        or values.get("tool_results", 0.0) >= results - 1e-6
    )


def _fit_chain(
    chain: Sequence[Entry],
    reasoning_sent: Sequence[tuple[float, float]],
    left_out: int | None,
    ruled_out: frozenset[str],
) -> Fit | None:
    if len(chain) - (left_out is not None) < 2:
        return None
    added = [e.added for e in chain if e.added is not None]
    columns = _columns(added)
    target = [float(e.growth or 0) for e in chain]
    sigma = [noise(a) for a in added]
    picked = [i for i in _spread(len(chain)) if i != left_out]
    weights = [0.0] * len(chain)
    for i in picked:
        weights[i] = 1.0 / (sigma[i] * sigma[i])
    names = [
        n for n in (*BASE, "newest_reasoning", "older_reasoning", *REWRITES) if any(columns[n])
    ]
    if columns["per_result"] == columns["per_turn"]:
        # One result every step: the two overheads are one column, fitted as one.
        names.remove("per_result")
    # The same characters on every step fitted: a multiple of the per-turn overhead, which
    # the steps tell from it only by its level (below); a rewrite found otherwise would rest
    # on the priors alone (the sample tasks' calls carry the same quotes on every step).
    constant = [n for n in REWRITES if n in names and len({columns[n][i] for i in picked}) == 1]
    model = [COEFFICIENTS[n] for n in names if n not in REWRITES]
    rewrites = [n for n in REWRITES if n in names and n not in constant]
    # Every model below (with rewrites, under any hypothesis' bounds) is this one with some
    # coefficients added or held: one inversion serves them all. The rewrites' columns join
    # the normal equations only when they are tried.
    normal = _normal(columns, [c.name for c in model], target, weights)
    quadratic = Quadratic(normal, model)
    free = quadratic.solve()
    expected = _predict(free.values, columns, len(target))
    far = [i for i in picked if abs(target[i] - expected[i]) > OUTLIER_Z * sigma[i]]
    aside: list[int] = []
    if far and len(far) * 10 <= len(picked) and len(picked) - len(far) >= 2:
        aside = far
        for i in far:
            weights[i] = 0.0
        normal = _normal(columns, [c.name for c in model], target, weights)
        quadratic = Quadratic(normal, model)
        free = quadratic.solve()
    if constant and _beyond_plausible(free.values):
        # Without it the steps need more than a template and a tokenizer plausibly add: the
        # level tells a constant rewrite from the overhead (`chain_short` escaping 16
        # characters on every step read as an overhead of 23 a turn with the results counted
        # at 1.8; the findings then ask the level of it, `kept.beyond_overhead`, with any
        # one step left out).
        rewrites = [n for n in REWRITES if n in rewrites or n in constant]
    # Each rewrite of the history the steps may show: fitted beside the rest, kept in the
    # model when it explains the steps clearly better and by enough tokens per character.
    freedom = normal.points - len(model)
    floor = REWRITE_EVIDENCE * (MIN_SCALE if freedom >= MIN_FREEDOM else 1.0)
    if left_out is None and free.objective < floor:
        # No rewrite can explain more than the free fit leaves: none reaches the evidence
        # it needs, and the common case costs no more solves. (A fit with a step left out
        # still weighs them: it checks a rewrite already found.)
        rewrites = []
    if rewrites:
        normal = extend_normal(normal, columns, {n: columns[n] for n in rewrites}, target, weights)
    richest = quadratic.bordered(normal, [COEFFICIENTS[n] for n in rewrites])
    fullest = richest.solve() if rewrites else free
    scale = _scale(normal, fullest, len(model) + len(rewrites))
    if left_out is None and free.objective - fullest.objective < REWRITE_EVIDENCE * scale:
        # Every rewrite free explains at most what all of them together do: none reaches
        # the evidence it needs, and weighing each alone would change nothing the findings
        # read (a fit with a step left out still weighs them, as above).
        rewrites = []
    extras: dict[str, float] = {}
    found = []
    for name in rewrites:
        # The other rewrites held at none: their prior is none, so this is the fit of the
        # model with this rewrite alone, objective and all.
        alone = richest.solve({n: (0.0, 0.0) for n in rewrites if n != name})
        evidence = max(0.0, free.objective - alone.objective) / scale
        extras[name], extras[f"{name}_evidence"] = alone.values[name], evidence
        if evidence >= REWRITE_EVIDENCE and alone.values[name] >= REWRITES[name]:
            found.append(COEFFICIENTS[name])
    if found:
        model = [*model, *found]
        quadratic = richest.without([n for n in rewrites if COEFFICIENTS[n] not in found])
        free = quadratic.solve()
    # Every hypothesis below is this model under other bounds: one quadratic, solved in the
    # few shares each hypothesis holds.
    sent = (sum(n for n, _ in reasoning_sent), sum(o for _, o in reasoning_sent))
    ranges = _Ranges.of({a.basis for a in added if a.reasoning > 0})
    grid = _Grid(
        normal, model, scale, sent, chain, columns, target, weights, ranges, quadratic, ruled_out
    )
    reasoning, tools, final = grid.verdicts(free)
    # A behaviour (a cap on tool results) may explain the steps far better than the free fit
    # could: the noise is then what is left after it, and the verdicts are judged again (the
    # fits are the same, only their costs change: the grid keeps them). A faithful host taken
    # without weighing the rest stays so: a smaller noise only makes keeping everything,
    # which explains the steps as well as the free fit, the more probable.
    rescaled = _scale(normal, final, len(model))
    if rescaled < scale:
        scale = rescaled
        if not grid.shortcut:
            grid = replace(grid, scale=scale)
            reasoning, tools, final = grid.verdicts(free, shortcut=False)
    expected = _predict(final.values, {**columns, **_cap_columns(chain, final)}, len(target))
    return Fit(
        normal=normal,
        model=tuple(model),
        free=free,
        final=final,
        reasoning=reasoning,
        tool_results=tools,
        scale=scale,
        steps=tuple(e.step for e in chain),
        expected=tuple(expected),
        residuals=tuple(t - p for t, p in zip(target, expected, strict=True)),
        noise=tuple(sigma),
        set_aside=tuple(chain[i].step for i in aside),
        extras=extras,
    )


def _scale(normal: Normal, solution: Solution, coefficients: int) -> float:
    """The run's own misfit per degree of freedom, as a factor on the assumed noise: up
    whenever the fit cannot follow the steps (a host that behaves differently from one request
    to the next gives no evidence of any one behaviour), down only when enough steps agree
    the noise is smaller than assumed."""
    freedom = normal.points - coefficients
    scale = solution.misfit / max(MIN_FREEDOM, freedom)
    return max(MIN_SCALE if freedom >= MIN_FREEDOM else 1.0, scale)


def _normal(
    columns: Mapping[str, Sequence[float]],
    names: Sequence[str],
    target: Sequence[float],
    weights: Sequence[float],
) -> Normal:
    return normal_equations({n: columns[n] for n in names}, target, weights)


def _predict(
    values: Mapping[str, float], columns: Mapping[str, Sequence[float]], n: int
) -> list[float]:
    expected = [0.0] * n
    for name, value in values.items():
        column = columns.get(name)
        if column is not None:
            expected = [e + value * c for e, c in zip(expected, column, strict=True)]
    return expected


@dataclass(frozen=True)
class _Ranges:
    """What "all the reasoning counted" and "none of it" allow, by how it was measured."""

    kept: tuple[float, float]
    gone: tuple[float, float]

    @staticmethod
    def of(bases: set[str]) -> _Ranges:
        """The loosest ranges the run's reasoning measurements call for."""
        if "estimated" in bases:
            return _Ranges(KEPT, GONE)
        return _Ranges(KEPT_COUNTED, GONE_SPLIT if "split" in bases else GONE)

    def held(self, behaviour: str) -> dict[str, tuple[float, float]]:
        """Bounds holding the reasoning shares where `behaviour` puts them."""
        # Only the one asked for is built: every hypothesis solved asks (KeyError as before).
        if behaviour == "kept":
            return {"newest_reasoning": self.kept, "older_reasoning": self.kept}
        if behaviour == "none":
            return {"newest_reasoning": self.gone, "older_reasoning": self.gone}
        if behaviour == "newest_only":
            return {"newest_reasoning": self.kept, "older_reasoning": self.gone}
        if behaviour == "partial":
            free = (min(self.gone[0], 0.0), COEFFICIENTS["newest_reasoning"].high)
            return {"newest_reasoning": free, "older_reasoning": free}
        raise KeyError(behaviour)


_TOOLS_HELD: dict[str, dict[str, tuple[float, float]]] = {
    "kept": {"tool_results": RESULTS_KEPT},
    "dropped": {"tool_results": GONE},
    "partial": {},
}


@dataclass
class _Grid:
    """Every combination of a reasoning behaviour and a tool-result behaviour, fitted: the
    two can stand in for each other on a short run (a result cut short looks like reasoning
    lost), so each is judged with the other free to be whatever explains the steps."""

    normal: Normal
    model: list[Coefficient]
    scale: float
    sent: tuple[float, float]
    """Reasoning in the chain's requests: the newest turns', the older turns'."""
    chain: Sequence[Entry]
    columns: Mapping[str, Sequence[float]]
    target: Sequence[float]
    weights: Sequence[float]
    ranges: _Ranges = _Ranges(KEPT, GONE)
    """What each reasoning behaviour allows, by how the reasoning was measured."""
    quadratic: Quadratic | None = None
    """The model over `normal`, built once for every hypothesis (built here when None)."""
    ruled_out: frozenset[str] = frozenset()
    """Behaviours other evidence excludes, not tried (`ledger.cache_held`: "newest_only")."""
    solved: dict[tuple[str, str], Solution | None] = field(default_factory=dict)
    """Each hypothesis' fit, kept for a grid judged again at another noise scale."""
    caps: list[_Cap | None] = field(default_factory=list)
    """The truncation length chosen, once it was (a list, shared the same way)."""
    shortcut: bool = False
    """Whether the verdicts took a faithful host without weighing the other behaviours."""

    def _model(self) -> Quadratic:
        if self.quadratic is None:
            self.quadratic = Quadratic(self.normal, self.model)
        return self.quadratic

    def verdicts(
        self, free: Solution, shortcut: bool = True
    ) -> tuple[Verdict | None, Verdict | None, Solution]:
        """The reasoning and tool-result verdicts and the fit of their behaviours combined
        (`shortcut`: take a faithful host without weighing the rest when the free fit says
        so)."""
        names = {c.name for c in self.model}
        has_reasoning = bool(names & {"newest_reasoning", "older_reasoning"}) and sum(self.sent) > 0
        has_tools = "tool_results" in names
        kept = self._kept(free, has_reasoning, has_tools) if shortcut else None
        if kept is not None:
            self.shortcut = True
            verdict = Verdict((Behaviour("kept", kept, 1.0, 0.0, 1.0),))
            return (verdict if has_reasoning else None), (verdict if has_tools else None), kept
        split = "older_reasoning" in names
        reasoning = ["kept", "none", "partial", *(["newest_only"] if split else [])]
        reasoning = [r for r in reasoning if r not in self.ruled_out]
        tools = ["kept", "dropped", "partial", "truncated"] if has_tools else ["partial"]
        if not has_reasoning:
            reasoning = ["partial"]
        cap = self._cached_cap() if has_tools else None
        cells: list[_Cell] = []
        for r in reasoning:
            for t in tools:
                if (r, t) not in self.solved:
                    self.solved[r, t] = self._reused(r, t) or self._solve(r, t, cap)
                solution = self.solved[r, t]
                if solution is None:
                    continue
                penalty = PENALTY * (2 if split else 1) if r == "partial" and has_reasoning else 0
                penalty += PENALTY if t in ("partial", "truncated") else 0.0
                cells.append(_Cell(r, t, solution, solution.objective / self.scale + penalty))
        low = min(c.cost for c in cells)
        for cell in cells:
            cell.probability = math.exp(-(cell.cost - low) / 2.0)
        total = sum(c.probability for c in cells)
        for cell in cells:
            cell.probability /= total
        best = max(cells, key=lambda c: c.probability)
        return (
            self._verdict([(c.reasoning, c) for c in cells], "r") if has_reasoning else None,
            self._verdict([(c.tools, c) for c in cells], "t") if has_tools else None,
            best.solution,
        )

    def _kept(self, free: Solution, reasoning: bool, tools: bool) -> Solution | None:
        """The fit with every part kept, when the free fit already counts nearly all of each
        part and keeping all explains the steps about as well: no other behaviour can then do
        clearly better, and the rest is not tried (the common case, and the cheap one)."""
        if self.scale > MAX_KEPT_SCALE:
            return None  # the free fit cannot follow the steps: another behaviour may
        values = free.values
        inside = (
            not reasoning
            or all(
                self.ranges.kept[0] <= values.get(n, 1.0) <= self.ranges.kept[1]
                for n in ("newest_reasoning", "older_reasoning")
            )
        ) and (not tools or RESULTS_KEPT[0] <= values.get("tool_results", 1.0) <= RESULTS_KEPT[1])
        if inside:
            return free  # keeping everything is the free fit itself
        shares = [values[n] for n in ("newest_reasoning", "older_reasoning") if n in values]
        if reasoning and any(share < NEARLY_KEPT for share in shares):
            return None
        if tools and values.get("tool_results", 1.0) < NEARLY_KEPT * RESULTS_KEPT[0]:
            return None
        held = {**(self.ranges.held("kept") if reasoning else {}), **_TOOLS_HELD["kept"]}
        if not tools:
            held.pop("tool_results")
        kept = self._model().solve(held)
        return kept if kept.objective - free.objective <= KEPT_SLACK else None

    def _reused(self, reasoning: str, tools: str) -> Solution | None:
        """The fit of a narrower hypothesis already solved, when none of the bounds this one
        loosens held it: loosening a bound the optimum does not touch leaves it where it is
        (the problem is convex). "partial" loosens the shares of every other behaviour."""
        if tools == "partial":
            kept = self.solved.get((reasoning, "kept"))
            if kept is not None and _inside(kept, _TOOLS_HELD["kept"]):
                return kept
        if reasoning == "partial":
            wide = self.ranges.held("partial")
            for narrower in ("kept", "none"):
                box = self.ranges.held(narrower)
                fit = self.solved.get((narrower, tools))
                if fit is not None and _within(box, wide) and _inside(fit, box):
                    return fit
        return None

    def _solve(self, reasoning: str, tools: str, cap: _Cap | None) -> Solution | None:
        held = {**self.ranges.held(reasoning), **_TOOLS_HELD.get(tools, {})}
        refund = held_prior(held, {c.name for c in self.model})
        if tools != "truncated":
            solution = self._model().solve(held)
            return replace(solution, objective=solution.objective - refund)
        if cap is None:
            return None
        solution = cap.quadratic.solve(held)
        return Solution(
            {**solution.values, "cap": cap.length}, solution.objective - refund, solution.misfit
        )

    def _cached_cap(self) -> _Cap | None:
        if not self.caps:
            self.caps.append(self._cap())
        return self.caps[0]

    def _cap(self) -> _Cap | None:
        """The truncation length that explains the steps best (reasoning left free)."""
        largest = max(
            (r for e in self.chain if e.added is not None for r in e.added.results), default=0
        )
        others = self._model().without(["tool_results"])
        heads_tails = bounded(
            [COEFFICIENTS["result_heads"], COEFFICIENTS["result_tails"]],
            {"result_heads": RESULTS_KEPT, "result_tails": TAIL_CUT},
        )
        best: tuple[float, _Cap] | None = None
        for length in CAPS:
            if length >= largest:
                break
            heads, tails = _heads_tails(self.chain, length)
            if not any(tails):
                continue
            # The other columns' products are the run's own normal equations already.
            normal = extend_normal(
                self.normal,
                self.columns,
                {"result_heads": heads, "result_tails": tails},
                self.target,
                self.weights,
            )
            quadratic = others.bordered(normal, heads_tails)
            objective = quadratic.solve().objective
            if best is None or objective < best[0]:
                best = (objective, _Cap(float(length), quadratic))
        return None if best is None else best[1]

    def _verdict(self, cells: list[tuple[str, _Cell]], part: str) -> Verdict:
        """Marginal posterior of each behaviour of one part, with its retention taken from
        its most probable cell."""
        mass: dict[str, float] = {}
        top: dict[str, _Cell] = {}
        for name, cell in cells:
            mass[name] = mass.get(name, 0.0) + cell.probability
            if name not in top or cell.probability > top[name].probability:
                top[name] = cell
        behaviours = [
            Behaviour(
                name, top[name].solution, self._retention(name, top[name].solution, part), 0.0, p
            )
            for name, p in mass.items()
        ]
        return Verdict(tuple(sorted(behaviours, key=lambda b: -b.posterior)))

    def _retention(self, name: str, solution: Solution, part: str) -> float:
        values = solution.values
        if part == "r":
            newest_total, older_total = self.sent
            if name == "kept":
                return 1.0
            if name == "none":
                return 0.0
            newest = 1.0 if name == "newest_only" else _clip(values.get("newest_reasoning"))
            older = (
                0.0
                if name == "newest_only"
                else _clip(values.get("older_reasoning", values.get("newest_reasoning")))
            )
            return (newest * newest_total + older * older_total) / (newest_total + older_total)
        if name == "kept":
            return 1.0
        if name == "dropped":
            return 0.0
        if name == "truncated":
            return _kept_share(self.chain, values["cap"], values)
        return _clip(values.get("tool_results"))


@dataclass
class _Cell:
    """One combination of behaviours, its fit and its cost (misfit plus penalty)."""

    reasoning: str
    tools: str
    solution: Solution
    cost: float
    probability: float = 0.0


@dataclass(frozen=True)
class _Cap:
    """A truncation length with the model whose head and tail columns replace the tool
    results'."""

    length: float
    quadratic: Quadratic


def held_prior(held: Mapping[str, tuple[float, float]], fitted: set[str]) -> float:
    """The prior penalty of the coefficients a behaviour holds at one value (a part dropped:
    its share at none), not charged to that behaviour.

    A coefficient's prior says what its share is when the part counts (the host's tokens per
    estimated token of tool output: about one, give or take a tokenizer's half); it is no
    prior probability that the host keeps the part. Charged to a behaviour holding the share
    at none, it made a host dropping the tool results four units of misfit less probable than
    one dropping the reasoning (whose prior is flat) on steps that cannot tell them apart,
    so such runs read as the reasoning dropped. Each behaviour starts even; only the steps
    set them apart."""
    return sum(
        ((low - COEFFICIENTS[name].prior) / COEFFICIENTS[name].spread) ** 2
        for name, (low, high) in held.items()
        if low == high and name in fitted
    )


def _inside(solution: Solution, box: Mapping[str, tuple[float, float]]) -> bool:
    """Whether the solution's values of the coefficients in `box` (those it has) lie strictly
    inside their ranges."""
    values = solution.values
    return all(
        low + _MARGIN < values[name] < high - _MARGIN
        for name, (low, high) in box.items()
        if name in values
    )


def _within(
    inner: Mapping[str, tuple[float, float]], outer: Mapping[str, tuple[float, float]]
) -> bool:
    return all(
        outer[name][0] <= low and high <= outer[name][1] for name, (low, high) in inner.items()
    )


_MARGIN = 1e-9
"""Distance from a bound within which a value counts as held by it."""


def _clip(value: float | None) -> float:
    return 0.0 if value is None else min(1.0, max(0.0, value))


def _cap_columns(chain: Sequence[Entry], solution: Solution) -> dict[str, list[float]]:
    """The head and tail columns of the cap a truncated fit chose (none otherwise)."""
    cap = solution.values.get("cap")
    if cap is None:
        return {}
    heads, tails = _heads_tails(chain, cap)
    return {"result_heads": heads, "result_tails": tails}


def _heads_tails(chain: Sequence[Entry], cap: float) -> tuple[list[float], list[float]]:
    heads: list[float] = []
    tails: list[float] = []
    for e in chain:
        results = e.added.results if e.added is not None else ()
        head = sum(min(r, cap) for r in results)
        heads.append(head)
        tails.append(sum(results) - head)
    return heads, tails


def _kept_share(chain: Sequence[Entry], cap: float, values: Mapping[str, float]) -> float:
    """Share of the tool-result tokens in the chain's requests that a cap at `cap` keeps."""
    head_share = min(1.0, values.get("result_heads", 1.0))
    tail_share = min(1.0, max(0.0, values.get("result_tails", 0.0)))
    heads = tails = total_heads = total_tails = 0.0
    for e in chain:
        if e.added is not None:
            head = sum(min(r, cap) for r in e.added.results)
            heads += head
            tails += e.added.tool_results - head
        # Every request carries all the results so far.
        total_heads += heads
        total_tails += tails
    sent = total_heads + total_tails
    if sent <= 0:
        return 1.0
    return (head_share * total_heads + tail_share * total_tails) / sent
