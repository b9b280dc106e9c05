"""Pure parts of the domain: money, terms, paging, the price book."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain import paging
from service.domain.errors import SeatError
from service.domain.model import Hub, Tier
from service.domain.prices import PriceBook, prorate
from service.domain.terms import add_months, next_renewal

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 31, tzinfo=UTC)  # a 30-day term


def test_i6_prorate_rounds_half_even_to_the_minor_unit() -> None:
    # 15 of 30 days of 3 cents = 1.5 cents -> 2 (even); of 1 cent = 0.5 -> 0 (even).
    middle = START + timedelta(days=15)
    assert prorate(3, middle, START, END) == 2
    assert prorate(1, middle, START, END) == 0
    assert prorate(5, middle, START, END) == 2  # 2.5 -> 2


def test_s3_prorate_charges_the_rest_of_the_term() -> None:
    assert prorate(9000, START, START, END) == 9000
    assert prorate(9000, END, START, END) == 0
    assert prorate(9000, START + timedelta(days=10), START, END) == 6000


@given(st.integers(0, 10**9), st.integers(0, 30 * 86400))
def test_i6_prorate_is_the_exact_fraction_rounded(amount: int, seconds_in: int) -> None:
    now = START + timedelta(seconds=seconds_in)
    exact = Fraction(amount * (30 * 86400 - seconds_in), 30 * 86400)
    result = prorate(amount, now, START, END)
    assert isinstance(result, int)
    assert abs(result - exact) <= Fraction(1, 2)
    if abs(result - exact) == Fraction(1, 2):
        assert result % 2 == 0


def test_renewal_keeps_the_anchor_day_across_short_months() -> None:
    anchor = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    feb = add_months(anchor, 1)
    assert feb == datetime(2026, 2, 28, 9, 30, tzinfo=UTC)
    assert next_renewal(anchor, feb, 1) == datetime(2026, 3, 31, 9, 30, tzinfo=UTC)
    assert add_months(datetime(2028, 2, 29, tzinfo=UTC), 12) == datetime(2029, 2, 28, tzinfo=UTC)


def test_page_tokens_round_trip_and_refuse_other_filters() -> None:
    token = paging.encode_token(["usr_1", 2], ["users", "acc", None])
    assert paging.decode_token(token, ["users", "acc", None]) == ["usr_1", 2]
    with pytest.raises(SeatError) as refused:
        paging.decode_token(token, ["users", "acc", 1])
    assert refused.value.reason == "INVALID_FIELD"
    with pytest.raises(SeatError):
        paging.decode_token("not a token!", ["users", "acc", None])


def test_page_size_defaults_caps_and_refuses_negative() -> None:
    assert paging.page_size(0) == paging.DEFAULT_PAGE_SIZE
    assert paging.page_size(10**6) == paging.MAX_PAGE_SIZE
    with pytest.raises(SeatError):
        paging.page_size(-1)


def test_s2_price_book_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"currency_code": "EUR", "prices": [
        {"hub": "SALES", "tier": "STARTER", "included_seats": 3, "seat_month_minor": 1800}]}))
    book = PriceBook.load(path)
    assert book.currency_code == "EUR"
    assert book.price(Hub.SALES, Tier.STARTER).included_seats == 3
    assert book.price(Hub.SALES, Tier.STARTER).seat_month_minor == 1800
    assert book.price(Hub.SERVICE, Tier.STARTER) == PriceBook.default().price(Hub.SERVICE, Tier.STARTER)
    assert not book.price(Hub.SALES, Tier.FREE).purchasable
