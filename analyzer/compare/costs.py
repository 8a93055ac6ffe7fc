"""What a run cost, from the per-million-token prices in the provider profiles.

cost = (prompt − cached) · input + cached · cached_input (input when no cached price is
listed) + completion · output, all per million tokens. The embedded simulator costs nothing;
a provider or model without a listed price, or a run whose token counts are unknown (its host
reported no usage), has no cost (None), never a guessed one.
"""

from __future__ import annotations

from pathlib import Path

from traces.profiles import SIM_PROVIDER, Prices, load_profiles, profiles_path

PER = 1_000_000


def is_simulator(provider: str) -> bool:
    """Whether a provider label names the embedded simulator (`sim`, `sim-DIALECT`, `sim+…`)."""
    return provider == SIM_PROVIDER or provider.startswith((SIM_PROVIDER + "-", SIM_PROVIDER + "+"))


class PriceList:
    """Prices by (provider, model), read once from a providers file."""

    def __init__(self, prices: dict[tuple[str, str], Prices]) -> None:
        """`prices`: (profile name, model id) -> prices."""
        self._prices = prices

    @classmethod
    def from_file(cls, providers_file: Path | None) -> PriceList:
        """The prices of every profile in the providers file (none if it does not exist)."""
        path = profiles_path(providers_file)
        if not path.exists():
            return cls({})
        return cls(
            {
                (name, model): price
                for name, profile in load_profiles(path).items()
                for model, price in profile.prices.items()
            }
        )

    def run_cost(
        self,
        provider: str,
        model: str,
        prompt: float | None,
        cached: float,
        completion: float | None,
    ) -> float | None:
        """US dollars one run cost, or None when the price or a token count is unknown."""
        if is_simulator(provider):
            return 0.0
        price = self._prices.get((provider, model))
        if price is None or prompt is None or completion is None:
            return None
        cached = min(cached, prompt)
        cached_price = price.cached_input if price.cached_input is not None else price.input
        return (
            (prompt - cached) * price.input + cached * cached_price + completion * price.output
        ) / PER
