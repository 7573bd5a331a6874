"""The gRPC server: factory, interceptors, health, reflection and graceful shutdown.

:func:`create_server` builds a server around a :class:`linkage.realtime.core.Realtime` core and
returns ``(server, bound_port)`` (bind port 0 in tests). Interceptors run in list order,
the first outermost: :class:`ExceptionToStatus` comes first so that errors raised by any
later interceptor (TLS client roles, audit trail ...) are mapped too.

:func:`serve` is ``linkage serve``: it also registers the standard ``grpc.health.v1``
service and server reflection (so ``grpcurl`` and load balancers work), and on SIGTERM
or SIGINT reports NOT_SERVING, refuses new calls, lets in-flight calls finish (within
``grace`` seconds), cancels what is left, applies or journals queued enrolments, closes
the register and exits, in bounded time whatever the calls do (:func:`shutdown`).

Serving model: one thread per call (grpcio's synchronous server), in one pool of
``unary_workers + max_streams`` threads. Long-lived calls, every streaming method
(WatchChanges, WatchRun, EnrolBatch, health Watch, reflection), hold a thread for as long
as they are open, so at most ``max_streams`` of them are let in at once
(:class:`StreamLimiter`; one more is refused at once with RESOURCE_EXHAUSTED instead of
queueing for a thread): ``unary_workers`` threads always remain for Resolve, Enrol, the
look-ups and health checks, however many subscribers are listening. An idle change-feed
follower sleeps on a condition and reads nothing until a commit moves the feed
(:meth:`linkage.realtime.core.Realtime.watch`).

Hostile input is held to :class:`linkage.service.limits.ServiceLimits`: undecodable
messages, over-long or control-character strings and over-long streams get a proper
status (never INTERNAL), and error details are bounded in size.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from linkage.config import ProjectConfig, TlsConfig
from linkage.errors import (
    ConfigError,
    ConstraintConflict,
    InvalidRequest,
    LinkageError,
    NotFound,
    NotReady,
    PermissionDenied,
    ReviewConflict,
    RunInProgress,
    Unauthenticated,
)
from linkage.matching.model import ModelError
from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.service.audit import AuditCalls, AuditTrail
from linkage.service.auth import Authorise, Scope, TokenBook
from linkage.service.limits import (
    DecodedStream,
    RequestTooLarge,
    ServiceLimits,
    TooManyStreams,
    Undecodable,
    clip,
    tolerant,
)
from linkage.service.reflection import DocumentedPool
from linkage.service.review import ReviewServicer
from linkage.service.servicer import AdminServicer, BatchServicer, LinkageServicer
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

#: Largest request message accepted (bytes). A person's details are well under 4 KiB.
MAX_RECEIVE_MESSAGE_BYTES = 1 << 20
SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["LinkageService"].full_name,
    pb.DESCRIPTOR.services_by_name["BatchService"].full_name,
    pb.DESCRIPTOR.services_by_name["ReviewService"].full_name,
    pb.DESCRIPTOR.services_by_name["AdminService"].full_name,
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
      ``google.rpc.BadRequest`` listing the field violations (at most
      ``limits.max_violations``, descriptions clipped: the trailers stay a few KiB);
    * a request message that does not decode -> INVALID_ARGUMENT (every request
      deserializer is wrapped by :func:`linkage.service.limits.tolerant`);
    * :class:`~linkage.errors.Unauthenticated` -> UNAUTHENTICATED (one fixed message);
    * :class:`~linkage.errors.PermissionDenied` -> PERMISSION_DENIED;
    * :class:`~linkage.service.limits.RequestTooLarge` -> RESOURCE_EXHAUSTED;
    * :class:`~linkage.errors.NotFound` -> NOT_FOUND;
    * :class:`~linkage.errors.RunInProgress`, :class:`~linkage.errors.NotReady`,
      :class:`~linkage.matching.model.ModelError`, a review decision that contradicts the
      recorded constraints (:class:`~linkage.errors.ConstraintConflict`) or that the
      item's state refuses (:class:`~linkage.errors.ReviewConflict`) ->
      FAILED_PRECONDITION;
    * :class:`TimeoutError` -> DEADLINE_EXCEEDED;
    * :class:`grpc.RpcError` from reading the request stream (the client went away) ->
      CANCELLED;
    * anything else -> INTERNAL with a generic message and a reference; the traceback
      is logged under that reference (messages of our exceptions carry no personal data,
      and request contents are never logged).

    Status messages are clipped to ``limits.max_message_chars``, so a value echoed from
    the request (an unknown run ID of 9,000 characters) cannot overflow the trailers.
    """

    def __init__(self, limits: ServiceLimits | None = None):
        self.limits = limits or ServiceLimits()

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        handler = handler._replace(request_deserializer=tolerant(handler.request_deserializer))
        streaming = handler.request_streaming
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, method,
                                                            streaming))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, method,
                                                             streaming))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, method,
                                                              streaming))
        if handler.stream_stream:
            return handler._replace(stream_stream=self._stream(handler.stream_stream, method,
                                                               streaming))
        return handler

    @staticmethod
    def _decoded(request: Any, streaming: bool) -> Any:
        if streaming:
            return DecodedStream(request)
        if isinstance(request, Undecodable):
            raise request.error()
        return request

    def _unary(self, fn: Callable[[Any, grpc.ServicerContext], Any], method: str,
               streaming: bool) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            self._check_deadline(context)
            try:
                return fn(self._decoded(request, streaming), context)
            except Exception as exc:  # noqa: BLE001 - mapped, never swallowed
                self._abort(context, exc, method)

        return wrapper

    def _stream(self, fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]], method: str,
                streaming: bool) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._check_deadline(context)
            try:
                yield from fn(self._decoded(request, streaming), context)
            except Exception as exc:  # noqa: BLE001
                self._abort(context, exc, method)

        return wrapper

    @staticmethod
    def _check_deadline(context: grpc.ServicerContext) -> None:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")

    def _abort(self, context: grpc.ServicerContext, exc: Exception, method: str) -> None:
        context.abort_with_status(self.status_for(exc, method, self.limits))

    @staticmethod
    def status_for(exc: Exception, method: str = "",
                   limits: ServiceLimits | None = None) -> grpc.Status:
        lim = limits or ServiceLimits()

        def message(text: str) -> str:
            return clip(text, lim.max_message_chars)

        if isinstance(exc, InvalidRequest):
            return _status(grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT,
                           *_bad_request(exc.violations, lim))
        if isinstance(exc, Unauthenticated):  # one fixed message: nothing to learn from it
            return _status(grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED,
                           "missing or invalid credentials")
        if isinstance(exc, PermissionDenied):
            return _status(grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED,
                           message(str(exc)))
        if isinstance(exc, RequestTooLarge | TooManyStreams):
            return _status(grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED,
                           message(str(exc)))
        if isinstance(exc, NotFound):
            return _status(grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND, message(str(exc)))
        if isinstance(exc, RunInProgress | NotReady | ModelError | ConstraintConflict
                      | ReviewConflict):
            return _status(grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION,
                           message(str(exc)))
        if isinstance(exc, TimeoutError):
            return _status(grpc.StatusCode.DEADLINE_EXCEEDED, code_pb2.DEADLINE_EXCEEDED,
                           "deadline exceeded")
        if isinstance(exc, grpc.RpcError):  # reading the request stream: the client left
            return _status(grpc.StatusCode.CANCELLED, code_pb2.CANCELLED,
                           "the call was cancelled")
        ref = uuid.uuid4().hex[:12]
        log.error("internal error in %s (reference %s)", method, ref,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return _status(grpc.StatusCode.INTERNAL, code_pb2.INTERNAL,
                       f"internal error (reference {ref})")


class StreamLimiter(grpc.ServerInterceptor):
    """At most ``limit`` long-lived (streaming) calls open at once; one more is refused.

    Each open stream holds a thread of the server's pool (grpcio's synchronous server),
    and the pool has ``unary_workers + limit`` threads, so streams can never take the
    threads unary calls and health checks need. A refused stream raises
    :class:`~linkage.service.limits.TooManyStreams` (RESOURCE_EXHAUSTED, mapped by
    :class:`ExceptionToStatus`, which must come first). A slot is given back when the
    handler ends or the call terminates, whichever comes first (a client that goes
    away mid-stream frees its slot at once).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    def _acquire(self, context: grpc.ServicerContext) -> Callable[[], None]:
        with self._lock:
            if self._open >= self.limit:
                raise TooManyStreams(
                    f"the server has {self.limit:,} long-lived calls open (change feeds, run "
                    f"watches, enrolment streams): retry later or use the paginated calls")
            self._open += 1
        done = threading.Event()

        def release() -> None:
            with self._lock:
                if not done.is_set():
                    done.set()
                    self._open -= 1

        context.add_callback(release)
        return release

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        if handler.response_streaming:
            kind = "unary_stream" if handler.unary_stream else "stream_stream"
            fn = getattr(handler, kind)

            def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                release = self._acquire(context)
                try:
                    yield from fn(request, context)
                finally:
                    release()

            return handler._replace(**{kind: streaming})
        fn = handler.stream_unary

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            release = self._acquire(context)
            try:
                return fn(request, context)
            finally:
                release()

        return handler._replace(stream_unary=unary)


def _bad_request(violations: Sequence[tuple[str, str]], lim: ServiceLimits
                 ) -> tuple[str, list[Any]]:
    """(status message, [BadRequest]) within the limits: at most ``max_violations``
    violations, descriptions clipped, the serialized details at most
    ``max_details_bytes``; the message says how many were left out."""
    bad = error_details_pb2.BadRequest()
    for f, r in violations[: lim.max_violations]:
        v = bad.field_violations.add(field=clip(f, lim.max_description_chars),
                                     description=clip(r, lim.max_description_chars))
        if bad.ByteSize() > lim.max_details_bytes:
            bad.field_violations.remove(v)
            break
    text, listed = "invalid request: ", 0
    room = lim.max_message_chars - len(" (and 999999 more)")
    for f, r in violations:
        piece = (", " if listed else "") + (f or r)
        if len(text) + len(piece) > room and listed:
            break
        text += piece
        listed += 1
    if listed < len(violations):
        text += f" (and {len(violations) - listed} more)"
    return clip(text, lim.max_message_chars), [bad]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback interface (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: Any) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """TLS from the PEM files of ``serve.tls``; a ``client_ca`` makes it mutual: clients
    must present a certificate signed by that CA."""
    ca = _read(tls.client_ca) if tls.client_ca else None
    return grpc.ssl_server_credentials([(_read(tls.key), _read(tls.cert))],
                                       root_certificates=ca, require_client_auth=ca is not None)


def create_server(core: Realtime, *, host: str = "127.0.0.1", port: int = 0,
                  unary_workers: int | None = None, max_streams: int | None = None,
                  max_receive_message_bytes: int = MAX_RECEIVE_MESSAGE_BYTES,
                  interceptors: Sequence[grpc.ServerInterceptor] = (),
                  health_servicer: health.HealthServicer | None = None,
                  limits: ServiceLimits | None = None,
                  thread_pool: futures.ThreadPoolExecutor | None = None,
                  tls: TlsConfig | None = None,
                  tokens: TokenBook | None = None,
                  audit: AuditTrail | None = None,
                  ) -> tuple[grpc.Server, int]:
    """Build (not start) the server on ``host:port``; returns ``(server, bound_port)``.

    Args:
        core: the real-time core the servicers call.
        host: interface to bind (default loopback only).
        port: TCP port; 0 picks a free one (tests).
        unary_workers: threads kept for unary calls and health checks (default: the
            project's ``serve.unary_workers``).
        max_streams: long-lived calls open at once (default ``serve.max_streams``);
            the pool has ``unary_workers + max_streams`` threads.
        max_receive_message_bytes: larger request messages get RESOURCE_EXHAUSTED.
        interceptors: extra interceptors, run inside the exception mapper.
        health_servicer: the health service to register (one is made when None).
        limits: bounds on requests (default :class:`ServiceLimits`).
        thread_pool: the threads serving calls (made when None; it must have
            ``unary_workers + max_streams`` threads for the guarantee to hold).
        tls: serve TLS (mutual with ``client_ca``) from these files; without it the port is
            plaintext, which only a loopback ``host`` may be.
        tokens: the API tokens (default: the register's; open mode only on loopback).
        audit: where audit rows go (default: a trail on the core's register, closed with
            the core: :meth:`Realtime.close`).

    Raises:
        ValueError: plaintext asked for on an interface that is not loopback.
    """
    if tls is None and not is_loopback(host):
        raise ValueError(f"plaintext gRPC on {host} refused: serve TLS (serve.tls in the "
                         f"project file) or bind a loopback address")
    limits = limits or ServiceLimits()
    clients = core.project.serve.clients if tls is not None and tls.client_ca else ()
    tokens = tokens or TokenBook(core.register, allow_open=is_loopback(host) and not clients)
    options = [("grpc.max_receive_message_length", max_receive_message_bytes),
               ("grpc.so_reuseport", 0)]
    unary_workers = unary_workers or core.project.serve.unary_workers
    max_streams = max_streams or core.project.serve.max_streams
    pool = thread_pool or futures.ThreadPoolExecutor(max_workers=unary_workers + max_streams,
                                                     thread_name_prefix="linkage-rpc")
    if audit is None:
        audit = AuditTrail(core.register, on_write=core.snapshots.changed
                           if core.snapshots is not None else None)
        core.closers.append(audit.close)

    def outcome(exc: Exception) -> str:
        if isinstance(exc, LinkageError | TimeoutError | grpc.RpcError):
            return ExceptionToStatus.status_for(exc, limits=limits).code.name
        return "INTERNAL"  # logged once, with its reference, by ExceptionToStatus

    # The limiter inside the exception mapper: its refusal becomes RESOURCE_EXHAUSTED;
    # after authorisation, so a caller without credentials holds no stream slot.
    server = grpc.server(pool, interceptors=[ExceptionToStatus(limits),
                                             AuditCalls(audit, outcome),
                                             Authorise(tokens, certificates=clients,
                                                       scope=Scope.of_core(core)),
                                             StreamLimiter(max_streams), *interceptors],
                         options=options)
    pb_grpc.add_LinkageServiceServicer_to_server(LinkageServicer(core, limits), server)
    pb_grpc.add_BatchServiceServicer_to_server(BatchServicer(core, limits), server)
    pb_grpc.add_ReviewServiceServicer_to_server(ReviewServicer(core.review, limits), server)
    pb_grpc.add_AdminServiceServicer_to_server(AdminServicer(tokens, limits), server)
    health_servicer = health_servicer or health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    # The documented pool: reflection serves the proto's comments (grpcurl describe).
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server, pool=DocumentedPool())
    address = f"{host}:{port}"
    bound = (server.add_secure_port(address, server_credentials(tls)) if tls is not None
             else server.add_insecure_port(address))
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    return server, bound


@dataclass(frozen=True)
class Shutdown:
    """How :func:`shutdown` went."""

    clean: bool  # every call and thread ended by itself
    register_closed: bool


#: Seconds :func:`shutdown` waits, after the grace period, for cancelled calls to end.
CANCEL_WAIT = 1.0
#: Seconds it gives the enrolment writer to apply what is queued (the rest is journaled).
CLOSE_WAIT = 2.0


def shutdown(server: grpc.Server, core: Realtime, grace: float, *,
             health_servicer: health.HealthServicer | None = None,
             thread_pool: futures.ThreadPoolExecutor | None = None,
             cancel_wait: float = CANCEL_WAIT, close_wait: float = CLOSE_WAIT
             ) -> Shutdown:
    """Stop serving in bounded time: at most ``grace + cancel_wait + close_wait + 1.8`` s.

    Reports NOT_SERVING and refuses new calls; calls in flight get ``grace`` seconds,
    then are cancelled. The wait for them to end is bounded by ``cancel_wait`` more
    (grpcio's own ``server.stop(grace).wait()`` can wait forever: a call answered
    from inside grpcio, e.g. a message it could not decode, may never be marked
    finished). Then queued enrolments are applied, or journaled in ``enrol_queue``
    when the writer cannot finish within ``close_wait`` (a batch holds the register),
    and the register is closed.

    Returns:
        Whether every call and thread ended by itself (else the caller should end the
        process: :func:`serve` does, with ``os._exit``, since such threads would block
        the interpreter's exit) and whether the register was closed.
    """
    t0 = time.monotonic()
    if health_servicer is not None:
        health_servicer.enter_graceful_shutdown()
    stopped = server.stop(grace)  # refuses new calls now; cancels the rest at grace
    clean = stopped.wait(grace + cancel_wait)
    if not clean:
        log.warning("calls still open %.1f s after the grace period, though cancelled: "
                    "stopping without them", cancel_wait)
    closed = threading.Event()

    def close_core() -> None:
        enroller = core.enroller
        if enroller is not None:
            enroller.close(close_wait)  # apply what is queued; journal what cannot be
            # the writer's last group commits under the write lock: let it finish
            if core.write_lock.acquire(timeout=0.5):
                core.write_lock.release()
        core.close(timeout=0.5)
        closed.set()

    closer = threading.Thread(target=close_core, name="linkage-close", daemon=True)
    closer.start()
    closer.join(close_wait + 1.5)
    if not closed.is_set():
        log.error("the register could not be closed in time; exiting without it "
                  "(DuckDB recovers from its write-ahead log at the next start)")
        return Shutdown(clean=False, register_closed=False)
    if thread_pool is not None:
        thread_pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 0.3
        busy = _busy_threads(thread_pool)
        while busy and time.monotonic() < deadline:
            time.sleep(0.02)
            busy = _busy_threads(thread_pool)
        if busy:
            log.warning("%d call thread(s) still busy after cancellation", len(busy))
            clean = False
    log.info("shut down in %.1f s", time.monotonic() - t0)
    return Shutdown(clean=clean, register_closed=True)


def _busy_threads(pool: futures.ThreadPoolExecutor) -> list[threading.Thread]:
    return [t for t in list(getattr(pool, "_threads", ())) if t.is_alive()]


def serve(project: ProjectConfig, *, host: str = "127.0.0.1", port: int = 50051,
          grace: float | None = None, options: RealtimeOptions | None = None,
          ready: Callable[[int], None] | None = None,
          limits: ServiceLimits | None = None, web_port: int | None = None,
          insecure: bool = False) -> None:
    """Serve the API on the project's register until SIGTERM / SIGINT, then drain.

    With ``web_port`` (0: a free port) the reviewers' web page (:mod:`linkage.web`) is
    served too, on its own port, by the same core.

    Transport: TLS from ``serve.tls`` in the project file; plaintext only when asked for
    (``insecure``, ``--insecure`` or ``serve.insecure: true``) and only on loopback, else a
    :class:`~linkage.errors.ConfigError` before the register is opened. With no API
    token issued the server runs open (loopback only) and says so; see
    :mod:`linkage.service.auth`.

    ``grace`` defaults to the project's ``serve.shutdown_grace_seconds``, ``limits`` to
    :class:`ServiceLimits` with the project's ``serve.max_records_per_stream``. When a
    call or thread cannot be stopped, the process ends with ``os._exit`` once the
    register is closed (exit status 0; 1 when the register could not be closed).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    grace = project.serve.shutdown_grace_seconds if grace is None else grace
    limits = limits or ServiceLimits(max_records_per_stream=project.serve.max_records_per_stream)
    tls = project.serve.tls
    insecure = insecure or project.serve.insecure
    if tls is None and not insecure:
        raise ConfigError(project.path, "serve.tls", "no TLS certificate configured (serve.tls: "
                          "{cert, key}); to serve plaintext on loopback, pass --insecure or set "
                          "serve.insecure: true (see docs/OPERATIONS.md)")
    if tls is None and not is_loopback(host):
        raise ConfigError(project.path, "serve.tls", f"plaintext is only served on loopback, "
                          f"not on {host}: configure serve.tls")
    if options is None:
        options = RealtimeOptions(snapshot_seconds=project.serve.snapshot_seconds,
                                  max_persons_per_call=project.serve.max_persons_per_call,
                                  max_page_size=project.serve.max_page_size,
                                  resolve_processes=project.serve.resolve_processes)
    core = Realtime.open(project, options=options)
    # Clients identified by certificate: never open mode.
    tokens = TokenBook(core.register, allow_open=is_loopback(host) and not project.serve.clients)
    if tokens.live_count == 0 and not project.serve.clients and not is_loopback(host):
        core.close()
        raise ConfigError(project.path, "serve", f"no API token issued: {host} is not loopback, "
                          f"so every call would be refused; issue one with `linkage token "
                          f"issue` first")
    health_servicer = health.HealthServicer()
    pool = futures.ThreadPoolExecutor(
        max_workers=project.serve.unary_workers + project.serve.max_streams,
        thread_name_prefix="linkage-rpc")
    audit = AuditTrail(core.register, on_write=core.snapshots.changed
                       if core.snapshots is not None else None)
    core.closers.append(audit.close)
    server, bound = create_server(core, host=host, port=port, health_servicer=health_servicer,
                                  limits=limits, thread_pool=pool, tls=tls, tokens=tokens,
                                  audit=audit)
    if tokens.open_mode:
        warning = ("OPEN MODE: no API token is issued, so every call on this loopback port is "
                   "allowed without credentials. Issue tokens (`linkage token issue`) before "
                   "real use; once one exists, every call needs one.")
        log.warning(warning)
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    if tls is None:
        log.warning("plaintext (no TLS) on %s, as asked", host)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: draining (grace %.1f s)", signum, grace)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    log.info("linkage API serving on %s:%d (%s, register %s)", host, bound,
             "mutual TLS" if tls and tls.client_ca else "TLS" if tls else "plaintext",
             project.register)
    print(f"serving on {host}:{bound}", flush=True)
    web = None
    if web_port is not None:  # the reviewers' web page, same core, its own port
        from linkage.web.app import for_core, start

        # With TLS (the gRPC certificate) and sign-in by reviewer token, the page is served
        # where the API is; in plaintext it never leaves loopback.
        web_host = host if tls is not None or is_loopback(host) else "127.0.0.1"
        if web_host != host:
            log.warning("reviewers' web page kept on 127.0.0.1 (plaintext)")
        web, _ = start(for_core(core, tokens=tokens, audit=audit), web_host, web_port, tls)
        scheme = "https" if tls is not None else "http"
        print(f"reviewers' web page on {scheme}://{web_host}:{web.server_address[1]}/",
              flush=True)
    if ready:
        ready(bound)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        if web is not None:
            web.shutdown()
            web.server_close()
        done = shutdown(server, core, grace, health_servicer=health_servicer,
                        thread_pool=pool)
        for s, h in previous.items():
            signal.signal(s, h)
        log.info("stopped")
    if not done.clean:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if done.register_closed else 1)
