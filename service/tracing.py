"""OpenTelemetry tracing, configured by the standard environment variables and off without them.

    OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)   where spans go; unset: no tracing
    OTEL_EXPORTER_OTLP_PROTOCOL (or ..._TRACES_PROTOCOL)   grpc (the default here) or http/protobuf
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES            who sends them (default service name: seats)
    OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG           which traces are kept (default parentbased_always_on)
    OTEL_PROPAGATORS                                       how a caller's trace arrives (default tracecontext,baggage)
    OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none      off, whatever else is set

With tracing off the server registers its plain handlers: a call pays nothing for it. With
tracing on, each call is a SERVER span named ``<package.Service>/<Method>`` with the RPC semantic
conventions' attributes (``rpc.system=grpc``, ``rpc.service``, ``rpc.method``,
``rpc.grpc.status_code``), the child of the caller's span when the call's metadata carries a
W3C ``traceparent``; each store transaction a call runs is a child span of it (service/observe.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer
from opentelemetry.trace import TracerProvider as ApiTracerProvider

log = logging.getLogger("seats.tracing")

INSTRUMENTATION = "seats.service"
DEFAULT_SERVICE_NAME = "seats"


def _endpoint(env: Mapping[str, str]) -> str:
    return env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set and nothing turns them off."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(_endpoint(env))


def _exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    protocol = protocol.strip().lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()  # reads the endpoint, headers, certificate and timeout from the environment
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported: use grpc or http/protobuf")


def provider_from_env(env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A tracer provider exporting over OTLP as the environment says, or None when it asks for
    no traces. The SDK reads the sampler and the resource from the environment itself; the
    service name defaults to "seats" rather than the SDK's "unknown_service"."""
    env = os.environ if env is None else env
    if not enabled(env):
        return None
    resource = Resource.create()
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # shut down (spans flushed) at exit
    provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
    log.info(
        "tracing on",
        extra={"endpoint": _endpoint(env), "service_name": resource.attributes.get(SERVICE_NAME)},
    )
    return provider


def tracer_of(provider: ApiTracerProvider | None) -> Tracer | None:
    """The server's tracer from provider; None (tracing off) without one."""
    return provider.get_tracer(INSTRUMENTATION) if provider is not None else None
