"""Long-lived calls never starve the service (issue 15, item 1).

A real server with 4 threads kept for unary calls and room for 12 long-lived ones: 10
change-feed followers and 2 idle EnrolBatch streams (more long-lived calls than unary
workers) are opened, then Resolve and health checks must still answer promptly, the
followers must still get new events, one stream more is refused at once with
RESOURCE_EXHAUSTED, and cancelled streams give their slots back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
import service_fixtures as fx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_service import details

from linkage.realtime.core import Realtime
from linkage.service.server import create_server
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

UNARY_WORKERS, MAX_STREAMS, FOLLOWERS, IDLE_BATCHES = 4, 12, 10, 2


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> fx.SmallRegister:
    return fx.build_small_register(tmp_path_factory.mktemp("conc"), persons=80)


def _refused(api: pb_grpc.LinkageServiceStub, after: int) -> bool:
    """Whether one more stream is refused (every slot taken); an admitted probe ends at
    once (follow = false, nothing after ``after``) and frees its slot."""
    try:
        list(api.WatchChanges(pb.WatchChangesRequest(after_seq=after), timeout=5))
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert "long-lived calls open" in err.details()
        return True
    return False


def _open_streams(api: pb_grpc.LinkageServiceStub, after: int
                  ) -> tuple[list[grpc.Future], list[list[pb.PersonEvent]], threading.Event,
                             list[grpc.Future]]:
    calls, got = [], []
    for _ in range(FOLLOWERS):
        call = api.WatchChanges(pb.WatchChangesRequest(after_seq=after, follow=True))
        events: list[pb.PersonEvent] = []

        def drain(c: grpc.Future = call, out: list = events) -> None:
            try:
                for ev in c:
                    out.append(ev)
            except grpc.RpcError:
                pass  # cancelled at the end of the test

        threading.Thread(target=drain, daemon=True).start()
        calls.append(call)
        got.append(events)
    release = threading.Event()

    def idle() -> Iterator[pb.EnrolBatchRequest]:
        release.wait(60)  # a client that opened a stream and sends nothing
        return
        yield  # noqa: B901 - a generator

    batches = [api.EnrolBatch.future(idle()) for _ in range(IDLE_BATCHES)]
    return calls, got, release, batches


def _timed(fn, n: int, workers: int = 8) -> list[float]:  # noqa: ANN001
    def one(_: int) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    with futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, range(n)))


def test_long_lived_calls_never_block_unary_calls_or_health(small: fx.SmallRegister) -> None:
    core = Realtime.open(small.project)
    server, port = create_server(core, port=0, unary_workers=UNARY_WORKERS,
                                 max_streams=MAX_STREAMS)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        api = pb_grpc.LinkageServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        after = api.ListChanges(pb.ListChangesRequest(page_size=1)).last_seq
        while True:
            page = api.ListChanges(pb.ListChangesRequest(after_seq=after, page_size=1000))
            after = page.last_seq
            if not page.next_page_token:
                break
        calls, got, release, batches = _open_streams(api, after)
        # (60 s: once, in a full CI run, 20 s were not enough for the twelve streams to
        # be admitted on the 2-core machine; in isolation they open in well under 1 s.)
        deadline = time.monotonic() + 60
        while not _refused(api, after):  # every slot is taken once the streams are open
            assert time.monotonic() < deadline, "the streams did not open"
            time.sleep(0.1)
        assert FOLLOWERS + IDLE_BATCHES > UNARY_WORKERS

        rows = [r for u, r in small.rows.items() if u.startswith("cash_transfer:")]
        resolve = _timed(lambda: api.Resolve(pb.ResolveRequest(person=details(rows[0])),
                                             timeout=5), 40)
        checks = _timed(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5), 40)
        # Promptly: a thread is always free (seconds would mean queueing behind streams).
        assert max(resolve) < 1.5 and max(checks) < 1.5, (max(resolve), max(checks))

        # The followers still follow: an enrolment reaches every one of them.
        person = pb.PersonDetails(name=pb.Name(given_name="Oumarou", surname="Maiga"),
                                  sex=pb.SEX_MALE)
        r = api.Enrol(pb.EnrolRequest(source="mis_api", record_key="CONC-1", person=person),
                      timeout=10)
        deadline = time.monotonic() + 10
        while not all(any(e.person_id == r.person_id for e in g) for g in got):
            assert time.monotonic() < deadline, [len(g) for g in got]
            time.sleep(0.05)

        # Cancelled and finished streams give their slots back.
        for c in calls:
            c.cancel()
        release.set()
        for b in batches:
            assert b.result(timeout=10).created == 0
        deadline = time.monotonic() + 10
        while _refused(api, after):
            assert time.monotonic() < deadline, "slots were not given back"
            time.sleep(0.1)
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()


def test_without_the_unary_reserve_streams_starve_resolve(small: fx.SmallRegister) -> None:
    """The same load on a pool with no threads kept for unary calls (grpcio's default
    shape, as before): Resolve waits for a thread and misses its deadline. This is what
    the reserve prevents, and shows the test above can fail."""
    core = Realtime.open(small.project)
    pool = futures.ThreadPoolExecutor(max_workers=MAX_STREAMS)
    server, port = create_server(core, port=0, unary_workers=UNARY_WORKERS,
                                 max_streams=MAX_STREAMS, thread_pool=pool)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        api = pb_grpc.LinkageServiceStub(channel)
        after = api.ListChanges(pb.ListChangesRequest(page_size=1000)).last_seq + 10**9
        calls, _, release, batches = _open_streams(api, after)
        time.sleep(1.0)
        with pytest.raises(grpc.RpcError) as err:
            api.Resolve(pb.ResolveRequest(person=pb.PersonDetails(
                name=pb.Name(given_name="Awa"))), timeout=1.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for c in calls:
            c.cancel()
        release.set()
        for b in batches:
            b.result(timeout=10)
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()


