"""Client of the seat service: the generated seats.v1 modules (``seats.v1``), a typed client
(``SeatsClient``, and ``AsyncSeatsClient`` for asyncio) with per-call options (``CallOptions``), its
exceptions (``seats.errors``), friendly readings of replies (``seats.views``), a live
in-memory cache of one account's seats (``SeatCache``, ``AsyncSeatCache``) and the ``seatctl``
command line."""

from . import views
from ._api import ACTOR_HEADER
from ._retry import ONE_TRY, RetryPolicy
from .aio import AsyncSeatsClient
from .aio_cache import AsyncSeatCache
from .cache import SeatCache
from .client import SeatsClient
from .errors import SeatsError
from .requests import CallOptions, UnknownName

# Released together with the server, at the same version: service/__init__.py __version__ (a test
# holds them equal); clients/python/pyproject.toml reads this one.
__version__ = "0.2.0"

__all__ = [
    "ACTOR_HEADER",
    "ONE_TRY",
    "AsyncSeatCache",
    "AsyncSeatsClient",
    "CallOptions",
    "RetryPolicy",
    "SeatCache",
    "SeatsClient",
    "SeatsError",
    "UnknownName",
    "__version__",
    "views",
]
