"""The gRPC server: factory, interceptors, health, reflection and graceful shutdown.

:func:`create_server` builds a server around a :class:`linkage.realtime.Realtime` core and
returns ``(server, bound_port)`` (bind port 0 in tests). Interceptors run in list order,
the first outermost: :class:`ExceptionToStatus` comes first so that errors raised by any
later interceptor (TLS client roles, audit trail ...) are mapped too.

:func:`serve` is ``linkage serve``: it also registers the standard ``grpc.health.v1``
service and server reflection (so ``grpcurl`` and load balancers work), and on SIGTERM
or SIGINT reports NOT_SERVING, refuses new calls, lets in-flight calls finish (within
``grace`` seconds), applies queued enrolments and exits cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from linkage.config import ProjectConfig
from linkage.errors import InvalidRequest, NotFound, NotReady, RunInProgress
from linkage.model import ModelError
from linkage.realtime import Realtime, RealtimeOptions
from linkage.service.servicer import BatchServicer, LinkageServicer
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

#: Largest request message accepted (bytes). A person's details are well under 4 KiB.
MAX_RECEIVE_MESSAGE_BYTES = 1 << 20
SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["LinkageService"].full_name,
    pb.DESCRIPTOR.services_by_name["BatchService"].full_name,
)


def _status(code: grpc.StatusCode, rpc_code: int, message: str,
            details: Sequence[Any] = ()) -> grpc.Status:
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    return rpc_status.to_status(status_pb2.Status(code=rpc_code, message=message,
                                                  details=packed))


class ExceptionToStatus(grpc.ServerInterceptor):
    """Maps domain exceptions to gRPC statuses, for every method, in one place.

    * :class:`~linkage.errors.InvalidRequest` -> INVALID_ARGUMENT with a
      ``google.rpc.BadRequest`` listing the field violations;
    * :class:`~linkage.errors.NotFound` -> NOT_FOUND;
    * :class:`~linkage.errors.RunInProgress`, :class:`~linkage.errors.NotReady`,
      :class:`~linkage.model.ModelError` -> FAILED_PRECONDITION;
    * :class:`TimeoutError` -> DEADLINE_EXCEEDED;
    * anything else -> INTERNAL with a generic message and a reference; the traceback
      is logged under that reference (messages of our exceptions carry no personal data,
      and request contents are never logged).
    """

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=self._stream(handler.stream_stream, method))
        return handler

    def _unary(self, fn: Callable[[Any, grpc.ServicerContext], Any], method: str
               ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            self._check_deadline(context)
            try:
                return fn(request, context)
            except Exception as exc:  # noqa: BLE001 - mapped, never swallowed
                self._abort(context, exc, method)

        return wrapper

    def _stream(self, fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]], method: str
                ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._check_deadline(context)
            try:
                yield from fn(request, context)
            except Exception as exc:  # noqa: BLE001
                self._abort(context, exc, method)

        return wrapper

    @staticmethod
    def _check_deadline(context: grpc.ServicerContext) -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")

    def _abort(self, context: grpc.ServicerContext, exc: Exception, method: str) -> None:
        context.abort_with_status(self.status_for(exc, method))

    @staticmethod
    def status_for(exc: Exception, method: str = "") -> grpc.Status:
        if isinstance(exc, InvalidRequest):
            bad = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=r)
                for f, r in exc.violations])
            fields = ", ".join(f for f, _ in exc.violations)
            return _status(grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT,
                           f"invalid request: {fields}", [bad])
        if isinstance(exc, NotFound):
            return _status(grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND, str(exc))
        if isinstance(exc, RunInProgress | NotReady | ModelError):
            return _status(grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION,
                           str(exc))
        if isinstance(exc, TimeoutError):
            return _status(grpc.StatusCode.DEADLINE_EXCEEDED, code_pb2.DEADLINE_EXCEEDED,
                           "deadline exceeded")
        ref = uuid.uuid4().hex[:12]
        log.error("internal error in %s (reference %s)", method, ref,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return _status(grpc.StatusCode.INTERNAL, code_pb2.INTERNAL,
                       f"internal error (reference {ref})")


def create_server(core: Realtime, *, host: str = "127.0.0.1", port: int = 0,
                  max_workers: int = 32,
                  max_receive_message_bytes: int = MAX_RECEIVE_MESSAGE_BYTES,
                  interceptors: Sequence[grpc.ServerInterceptor] = (),
                  health_servicer: health.HealthServicer | None = None
                  ) -> tuple[grpc.Server, int]:
    """Build (not start) the server on ``host:port``; returns ``(server, bound_port)``.

    Args:
        core: the real-time core the servicers call.
        host: interface to bind (default loopback only).
        port: TCP port; 0 picks a free one (tests).
        max_workers: threads serving calls (each open stream holds one).
        max_receive_message_bytes: larger request messages get RESOURCE_EXHAUSTED.
        interceptors: extra interceptors, run inside the exception mapper.
        health_servicer: the health service to register (one is made when None).
    """
    options = [("grpc.max_receive_message_length", max_receive_message_bytes),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="linkage-rpc"),
                         interceptors=[ExceptionToStatus(), *interceptors], options=options)
    pb_grpc.add_LinkageServiceServicer_to_server(LinkageServicer(core), server)
    pb_grpc.add_BatchServiceServicer_to_server(BatchServicer(core), server)
    health_servicer = health_servicer or health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    return server, bound


def serve(project: ProjectConfig, *, host: str = "127.0.0.1", port: int = 50051,
          grace: float = 30.0, options: RealtimeOptions | None = None,
          ready: Callable[[int], None] | None = None) -> None:
    """Serve the API on the project's register until SIGTERM / SIGINT, then drain."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    core = Realtime.open(project, options=options)
    health_servicer = health.HealthServicer()
    server, bound = create_server(core, host=host, port=port, health_servicer=health_servicer)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: draining", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    log.info("linkage API serving on %s:%d (register %s)", host, bound, project.register)
    print(f"serving on {host}:{bound}", flush=True)
    if ready:
        ready(bound)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        health_servicer.enter_graceful_shutdown()
        server.stop(grace).wait()
        core.close()
        for s, h in previous.items():
            signal.signal(s, h)
        log.info("stopped")
