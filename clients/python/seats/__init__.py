"""Client of the seat service: the generated seats.v1 modules (``seats.v1``), a typed client
(``SeatsClient``, and ``AsyncSeatsClient`` for asyncio), its exceptions (``seats.errors``), a live
in-memory cache of one account's seats (``SeatCache``, ``AsyncSeatCache``) and the ``seatctl``
command line."""

from ._api import ACTOR_HEADER
from ._retry import RetryPolicy
from .aio import AsyncSeatsClient
from .aio_cache import AsyncSeatCache
from .cache import SeatCache
from .client import SeatsClient
from .errors import SeatsError

__version__ = "0.1.0"

__all__ = [
    "ACTOR_HEADER",
    "AsyncSeatCache",
    "AsyncSeatsClient",
    "RetryPolicy",
    "SeatCache",
    "SeatsClient",
    "SeatsError",
    "__version__",
]
