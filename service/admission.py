"""Admission: a call takes a worker thread only once it can run.

grpcio's synchronous server hands a call to its thread pool as soon as the headers arrive, and
the worker then waits for the request message. A caller that opens streams and never sends
would hold a worker per stream, and a few dozen such streams starve every other caller. Here:

- a call refused on its headers (no or an unknown token) is answered from the server's event
  loop at once: no worker, no concurrency slot beyond that instant, nothing read;
- a call with a single request message goes to a worker only when that message has arrived;
  until then it costs a pending receive, and a message that does not come within
  ``receive_timeout`` seconds ends the call with DEADLINE_EXCEEDED ``REQUEST_TIMEOUT``;
- request messages reach the handlers as bytes and are parsed there, after the credential
  check: a malformed message is INVALID_ARGUMENT ``MALFORMED_REQUEST``, never INTERNAL.

The first two need a hook that grpcio does not offer publicly: `WorkerPool.submit` receives
the pool work that grpcio's server builds (its `_unary_response_in_pool` and
`_stream_response_in_pool` with a request thunk) and reorders it, starting the message receive
itself and submitting the work once the message is there, with the same grpcio functions
grpcio would have called. `SUPPORTED` says whether the running grpcio has those names;
when it does not, the pool works as a plain ThreadPoolExecutor, the server logs a warning,
and `tests/faults/test_half_open.py` fails, so an upgrade that breaks this is seen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from .domain.errors import ErrorReason, Kind, SeatError, reason
from .errors import to_status

log = logging.getLogger("seats.admission")

try:  # grpcio internals, checked below; see the module docstring
    from grpc import _server as _grpc_server
    from grpc._cython import cygrpc as _cygrpc  # type: ignore[attr-defined]

    _IN_POOL = frozenset({_grpc_server._unary_response_in_pool, _grpc_server._stream_response_in_pool})
    _receive_message = _grpc_server._receive_message
    _abort = _grpc_server._abort
    _RECEIVE_MESSAGE_TOKEN = _grpc_server._RECEIVE_MESSAGE_TOKEN
    _CLOSED = _grpc_server._CLOSED
    _OPEN = _grpc_server._OPEN
    _ReceiveMessageOperation = _cygrpc.ReceiveMessageOperation
    _UNKNOWN = _cygrpc.StatusCode.unknown
    _UNIMPLEMENTED = _cygrpc.StatusCode.unimplemented
    SUPPORTED = True
except (ImportError, AttributeError):  # pragma: no cover - a grpcio without these names
    SUPPORTED = False

_UNARY_THUNK = "_unary_request.<locals>.unary_request"  # the request thunk of single-message methods


def malformed(message_type: type[Message], exc: Exception) -> SeatError:
    return SeatError(
        Kind.INVALID_ARGUMENT,
        reason(ErrorReason.MALFORMED_REQUEST),
        f"the request is not a valid {message_type.DESCRIPTOR.full_name} in protobuf binary ({exc})",
        {"message": message_type.DESCRIPTOR.full_name},
    )


class Refusal:
    """A handler behavior that only ends the call with status: the credential check's answer.
    WorkerPool sends it from the event loop without reading the request; a plain pool runs it."""

    def __init__(self, status: grpc.Status, on_refused: Callable[[], None]) -> None:
        self.status = status
        self.on_refused = on_refused

    def __call__(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.on_refused()
        context.abort_with_status(self.status)


def refusal_handler(
    handler: grpc.RpcMethodHandler[Any, Any], status: grpc.Status, on_refused: Callable[[], None]
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as handler that refuses every call with status."""
    behavior = Refusal(status, on_refused)
    kwargs: dict[str, Any] = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(behavior, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(behavior, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(behavior, **kwargs)
    return grpc.stream_stream_rpc_method_handler(behavior, **kwargs)


def parsing(
    handler: grpc.RpcMethodHandler[Any, Any],
    message_type: type[Message],
    check: Callable[[Message], None] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """handler, receiving its request as bytes and parsing it itself: a message that does not
    parse ends the call with INVALID_ARGUMENT MALFORMED_REQUEST. check, when given, sees every
    parsed request first and refuses with a SeatError."""
    parse = message_type.FromString

    def one(raw: bytes, context: grpc.ServicerContext) -> Message:
        try:
            request = parse(raw)
            if check is not None:
                check(request)
            return request
        except (DecodeError, ValueError, RecursionError) as exc:
            context.abort_with_status(to_status(malformed(message_type, exc)))
            raise  # not reached: abort_with_status raises
        except SeatError as exc:
            context.abort_with_status(to_status(exc))
            raise

    def many(raws: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Message]:
        for raw in raws:
            yield one(raw, context)

    out: dict[str, Any] = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        inner = handler.unary_unary

        def unary(raw: bytes, context: grpc.ServicerContext) -> Any:
            return inner(one(raw, context), context)

        return grpc.unary_unary_rpc_method_handler(unary, **out)
    if handler.unary_stream:
        inner_stream = handler.unary_stream
        if getattr(inner_stream, "experimental_non_blocking", False):  # answers through a callback (health Watch)

            def callback_stream(raw: bytes, context: grpc.ServicerContext, send: Any = None) -> Any:
                return inner_stream(one(raw, context), context, send)  # type: ignore[call-arg]

            callback_stream.experimental_non_blocking = True  # type: ignore[attr-defined]
            return grpc.unary_stream_rpc_method_handler(callback_stream, **out)

        def stream(raw: bytes, context: grpc.ServicerContext) -> Any:
            return inner_stream(one(raw, context), context)

        return grpc.unary_stream_rpc_method_handler(stream, **out)
    if handler.stream_unary:
        inner_in = handler.stream_unary

        def stream_in(raws: Iterator[bytes], context: grpc.ServicerContext) -> Any:
            return inner_in(many(raws, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_in, **out)
    inner_both = handler.stream_stream
    assert inner_both is not None

    def stream_both(raws: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        return inner_both(many(raws, context), context)

    return grpc.stream_stream_rpc_method_handler(stream_both, **out)


class _Pending:
    """The future grpcio keeps for a deferred call: only add_done_callback is asked of it."""

    __slots__ = ("call", "callbacks", "deadline", "done", "state")

    def __init__(self, state: Any, call: Any, deadline: float) -> None:
        self.callbacks: list[Callable[[Any], None]] = []
        self.done = False
        self.state, self.call, self.deadline = state, call, deadline

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        if self.done:
            fn(self)
        else:
            self.callbacks.append(fn)

    def finish(self) -> None:
        self.done = True
        callbacks, self.callbacks = self.callbacks, []
        for fn in callbacks:
            fn(self)


class WorkerPool(futures.ThreadPoolExecutor):
    """The server's worker threads, given a call only once it can run (see the module docstring)."""

    def __init__(self, max_workers: int, receive_timeout: float, max_running: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="seats-rpc")
        self.deferring = SUPPORTED
        self.receive_timeout = receive_timeout
        # Calls given to workers (running or queued) at most; further ones are refused at once
        # with RESOURCE_EXHAUSTED. Calls still waiting for their message do not count.
        self.max_running = max_running
        self._running = 0
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # Calls that stream their requests (reflection) read them on a worker, which they hold
        # while they last: they get threads of their own, not the seat calls' workers.
        self._streaming = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="seats-streaming")
        self._reaper: threading.Thread | None = None
        if self.deferring and receive_timeout > 0:
            self._reaper = threading.Thread(target=self._reap, name="seats-receive-timeout", daemon=True)
            self._reaper.start()

    @property
    def waiting(self) -> int:
        """Calls whose request message has not arrived yet."""
        return len(self._pending)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self.deferring and len(args) == 7 and args[0] in _IN_POOL:
            in_pool, rpc_event, state, behavior, thunk, deserializer, serializer = args
            if isinstance(behavior, Refusal):
                return self._refuse(rpc_event, state, behavior)
            if getattr(thunk, "__qualname__", "") == _UNARY_THUNK:
                return self._defer(fn, in_pool, rpc_event, state, behavior, deserializer, serializer)
            return self._streaming.submit(fn, *args, **kwargs)
        return super().submit(fn, *args, **kwargs)

    def stop_timeouts(self) -> None:
        """Ends the receive-timeout thread (the server is stopping: its grace period bounds the rest)."""
        self._closed.set()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed.set()
        self._streaming.shutdown(wait, cancel_futures=cancel_futures)
        super().shutdown(wait, cancel_futures=cancel_futures)

    # ---- refusals on the event loop ------------------------------------------------------

    @staticmethod
    def _refuse(rpc_event: Any, state: Any, behavior: Refusal) -> _Pending:
        behavior.on_refused()
        _end(state, rpc_event.call, behavior.status)
        pending = _Pending(state, rpc_event.call, 0.0)
        pending.done = True
        return pending

    # ---- single-message calls: a worker once the message is there -------------------------

    def _defer(
        self, run: Callable[..., Any], in_pool: Any, rpc_event: Any, state: Any, behavior: Any, de: Any, ser: Any
    ) -> _Pending:
        call = rpc_event.call
        pending = _Pending(state, call, time.monotonic() + self.receive_timeout)
        key = id(pending)
        receive = _receive_message(state, call, de)
        pool_submit = futures.ThreadPoolExecutor.submit

        def take() -> Any:
            with state.condition:
                request, state.request = state.request, None
                return request

        def done(_: Any) -> None:
            with self._lock:
                self._running -= 1
            pending.finish()

        def on_message(event: Any) -> Any:
            result = receive(event)
            with self._lock:
                self._pending.pop(key, None)
                admit = state.request is not None and not state.statused and self._running < self.max_running
                if admit:
                    self._running += 1
            try:
                if admit:
                    try:
                        work = pool_submit(self, run, in_pool, rpc_event, state, behavior, take, de, ser)
                    except BaseException:
                        done(None)
                        raise
                    work.add_done_callback(done)
                    return result
                if state.request is not None and not state.statused:
                    _end(state, call, _busy_status(self.max_running))
                with state.condition:
                    if state.client is _CLOSED and not state.statused:  # the client closed without a message
                        _abort(state, call, _UNIMPLEMENTED, b"this method requires exactly one request message")
            except RuntimeError:  # the pool is shut down: the server is stopping
                _end(state, call, _stopping_status())
            except Exception:  # never into grpcio's event loop
                log.exception("could not hand a call to a worker")
                _end(state, call, _stopping_status())
            pending.finish()
            return result

        with self._lock:
            self._pending[key] = pending
        call.start_server_batch((_ReceiveMessageOperation(0),), on_message)
        state.due.add(_RECEIVE_MESSAGE_TOKEN)
        return pending

    def _reap(self) -> None:
        """Ends calls whose request message did not arrive in time."""
        tick = min(1.0, max(self.receive_timeout / 4, 0.05))
        while not self._closed.wait(tick):
            now = time.monotonic()
            with self._lock:
                due = [p for p in self._pending.values() if p.deadline <= now]
            for pending in due:
                with pending.state.condition:
                    if pending.state.request is None and not pending.state.statused:
                        _end(pending.state, pending.call, _timeout_status(self.receive_timeout))


def _end(state: Any, call: Any, status: grpc.Status) -> None:
    """Sends status on a call that has not answered yet (grpcio's own abort, with our details)."""
    with state.condition:
        if state.statused:
            return
        state.code = status.code
        state.details = status.details.encode()
        state.trailing_metadata = status.trailing_metadata
        _abort(state, call, _UNKNOWN, b"")


def _timeout_status(seconds: float) -> grpc.Status:
    return to_status(
        SeatError(
            Kind.DEADLINE_EXCEEDED,
            reason(ErrorReason.REQUEST_TIMEOUT),
            f"the request message did not arrive within {seconds:g} s of the call's headers",
            {"timeout_seconds": f"{seconds:g}"},
        )
    )


def _busy_status(limit: int) -> grpc.Status:
    return to_status(
        SeatError(
            Kind.RESOURCE_EXHAUSTED,
            reason(ErrorReason.TOO_MANY_CALLS),
            f"the server runs {limit} calls at once and all are taken; retry with backoff",
            {"limit": str(limit)},
        )
    )


def _stopping_status() -> grpc.Status:
    return to_status(
        SeatError(Kind.UNAVAILABLE, reason(ErrorReason.SHUTTING_DOWN), "the server is shutting down; retry the call")
    )
