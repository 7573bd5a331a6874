"""Server reflection that carries the proto's documentation.

The generated Python stubs hold the ``linkage.v1`` descriptor without source info, so
the standard reflection service (which serializes descriptors from the pool) would
serve no comments, and ``grpcurl describe`` would show bare fields.
``scripts/gen_protos.py`` also writes ``linkage_descriptor.binpb``, the same file
descriptor *with* source info; :class:`DocumentedPool` hands reflection that one for
our proto and the pool's own for everything else (well-known types, health).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool

DESCRIPTOR_SET = "linkage_descriptor.binpb"


@cache
def documented_files() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """File name -> its FileDescriptorProto with source info (comments)."""
    data = resources.files("linkage.service.v1").joinpath(DESCRIPTOR_SET).read_bytes()
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    return {f.name: f for f in fds.file}


class _Documented:
    """A file descriptor whose ``CopyToProto`` includes the source info."""

    def __init__(self, descriptor: Any, proto: descriptor_pb2.FileDescriptorProto):
        self._descriptor, self._proto = descriptor, proto

    def __getattr__(self, name: str) -> Any:
        return getattr(self._descriptor, name)

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:  # noqa: N802
        proto.CopyFrom(self._proto)

    @property
    def dependencies(self) -> list[Any]:
        return [_wrap(d) for d in self._descriptor.dependencies]


def _wrap(descriptor: Any) -> Any:
    proto = documented_files().get(descriptor.name)
    return descriptor if proto is None else _Documented(descriptor, proto)


class DocumentedPool:
    """The default descriptor pool, answering with documented file descriptors."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None):
        self._pool = pool or descriptor_pool.Default()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileByName(self, name: str) -> Any:  # noqa: N802 - the pool's API
        return _wrap(self._pool.FindFileByName(name))

    def FindFileContainingSymbol(self, symbol: str) -> Any:  # noqa: N802
        return _wrap(self._pool.FindFileContainingSymbol(symbol))


__all__ = ["DocumentedPool", "documented_files"]
