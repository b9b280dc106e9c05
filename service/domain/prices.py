"""The price book (S2, S3): included seats, per-seat and plan prices per hub and tier,
in integer minor units per month (I6); and proration."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

from .model import Hub, Tier


@dataclass(frozen=True)
class TierPrice:
    included_seats: int
    seat_month_minor: int
    plan_month_minor: int

    @property
    def purchasable(self) -> bool:
        return self.seat_month_minor > 0


@dataclass(frozen=True)
class PriceBook:
    currency_code: str
    minor_per_unit: int
    prices: dict[tuple[Hub, Tier], TierPrice]

    def price(self, hub: Hub, tier: Tier) -> TierPrice:
        return self.prices[(hub, tier)]

    @staticmethod
    def default() -> PriceBook:
        per_tier = {
            Tier.FREE: TierPrice(2, 0, 0),
            Tier.STARTER: TierPrice(1, 2000, 2000),
            Tier.PROFESSIONAL: TierPrice(2, 9000, 50000),
            Tier.ENTERPRISE: TierPrice(5, 15000, 150000),
        }
        return PriceBook("USD", 100, {(hub, tier): p for hub in Hub for tier, p in per_tier.items()})

    @staticmethod
    def load(path: str | Path) -> PriceBook:
        """Reads a JSON price book; hubs and tiers it leaves out keep the defaults.

        {"currency_code": "EUR", "minor_per_unit": 100,
         "prices": [{"hub": "SALES", "tier": "STARTER", "included_seats": 2,
                     "seat_month_minor": 1800, "plan_month_minor": 1800}]}
        """
        data = json.loads(Path(path).read_text())
        base = PriceBook.default()
        prices = dict(base.prices)
        for entry in data.get("prices", []):
            key = (Hub[entry["hub"]], Tier[entry["tier"]])
            old = prices[key]
            prices[key] = TierPrice(
                int(entry.get("included_seats", old.included_seats)),
                int(entry.get("seat_month_minor", old.seat_month_minor)),
                int(entry.get("plan_month_minor", old.plan_month_minor)),
            )
        for (hub, tier), p in prices.items():
            if min(p.included_seats, p.seat_month_minor, p.plan_month_minor) < 0:
                raise ValueError(f"price book: negative value for {hub.name} {tier.name}")
        return PriceBook(
            str(data.get("currency_code", base.currency_code)),
            int(data.get("minor_per_unit", base.minor_per_unit)),
            prices,
        )


def prorate(full_amount_minor: int, now: datetime, term_start: datetime, renewal: datetime) -> int:
    """The share of a full-term amount for the rest of the term, rounded half-even to the
    minor unit: full * (renewal - now) / (renewal - term_start), computed exactly."""
    term = _micros(renewal - term_start)
    remaining = max(0, min(term, _micros(renewal - now)))
    return round(Fraction(full_amount_minor * remaining, term))


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
