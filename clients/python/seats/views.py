"""Friendly readings of replies, next to the messages (which stay what the client returns):

    reply = seats.get_seat_summary(account_id)
    view(reply)["pools"][0]["hub"]          # "sales"
    amount(charge.amount)                   # Amount(Decimal("20.00"), "USD"), str(): "20.00 USD"
    moment(account.renewal_time)            # datetime(..., tzinfo=UTC)
    hub_name(pool.hub), tier_name(pool.tier)  # "sales", "professional"

``view(message)`` reads a whole message into plain values: a dict per message (every field,
by its proto name), enum values as short lowercase names (None for ``*_UNSPECIFIED``, the
number for a value newer than this client), ``google.type.Money`` as ``Amount``,
``google.protobuf.Timestamp`` as an aware UTC datetime, an unset message field as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.money_pb2 import Money

from .v1 import resources_pb2

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Amount:
    """An exact amount of money: ``value`` a Decimal in units of ``currency`` (ISO 4217)."""

    value: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.value:f} {self.currency}"


def amount(money: Money) -> Amount:
    """A ``google.type.Money`` as an exact Decimal with its currency, with at least two
    decimals: 20 units and 500000000 nanos of USD is ``Amount(Decimal("20.50"), "USD")``."""
    value = Decimal(f"{money.units * 1_000_000_000 + money.nanos}e-9").normalize()
    if value.as_tuple().exponent > -2:  # type: ignore[operator]
        value = value.quantize(CENT)
    return Amount(value, money.currency_code)


def moment(timestamp: Timestamp) -> datetime:
    """A ``google.protobuf.Timestamp`` as an aware datetime in UTC."""
    return timestamp.ToDatetime(tzinfo=UTC)


def enum_name(enum: EnumDescriptor, number: int) -> str | int | None:
    """The short lowercase name of an enum value (``HUB_SALES``: ``"sales"``), None for the
    ``*_UNSPECIFIED`` value 0, and the number itself for a value this client does not know."""
    value = enum.values_by_number.get(number)
    if value is None:
        return number
    if number == 0:
        return None
    prefix = enum.values_by_number[0].name.removesuffix("UNSPECIFIED") if 0 in enum.values_by_number else ""
    return value.name.removeprefix(prefix).lower()


def hub_name(hub: int) -> str | int | None:
    """``"sales"``, ``"service"``; None for HUB_UNSPECIFIED."""
    return enum_name(resources_pb2.Hub.DESCRIPTOR, hub)


def tier_name(tier: int) -> str | int | None:
    """``"free"``, ``"starter"``, ``"professional"``, ``"enterprise"``; None for TIER_UNSPECIFIED
    (CheckSeats: the user holds no seat of the hub)."""
    return enum_name(resources_pb2.Tier.DESCRIPTOR, tier)


def view(message: Message) -> dict[str, Any]:
    """Every field of ``message`` as plain Python values (see the module's documentation)."""
    return {field.name: _field(message, field) for field in message.DESCRIPTOR.fields}


def _field(message: Message, field: Any) -> Any:  # a FieldDescriptor, of python or upb
    value = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {key: _value(value_field, item) for key, item in value.items()}
    if field.is_repeated:
        return [_value(field, item) for item in value]
    if field.has_presence and not message.HasField(field.name):
        return None
    return _value(field, value)


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.enum_type is not None:
        return enum_name(field.enum_type, value)
    if field.message_type is None:
        return value
    if isinstance(value, Money):
        return amount(value)
    if isinstance(value, Timestamp):
        return moment(value)
    return view(value)
