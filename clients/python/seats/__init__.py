"""Client of the seat service: the generated seats.v1 modules (``seats.v1``), a typed client
(``SeatsClient``, and ``AsyncSeatsClient`` for asyncio), its exceptions (``seats.errors``) and
the ``seatctl`` command line."""

from ._api import ACTOR_HEADER
from ._retry import RetryPolicy
from .aio import AsyncSeatsClient
from .client import SeatsClient
from .errors import SeatsError

__version__ = "0.1.0"

__all__ = ["ACTOR_HEADER", "AsyncSeatsClient", "RetryPolicy", "SeatsClient", "SeatsError", "__version__"]
