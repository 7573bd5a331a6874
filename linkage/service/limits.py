"""Limits of the gRPC API and the guards that enforce them against hostile input.

Every request is held to the same bounds, whoever sends it:

* a message that does not decode as its request type is answered ``INVALID_ARGUMENT``
  (grpcio's own answer is ``INTERNAL``, from a path that can also leave the call
  half-finished and hang the server's shutdown): :func:`tolerant` wraps every request
  deserializer so that a decode error becomes an :class:`Undecodable` value, which
  :class:`linkage.service.server.ExceptionToStatus` refuses;
* every string field is at most :attr:`ServiceLimits.max_field_chars` characters and has
  no control character (:func:`string_problems`);
* an ``EnrolBatch`` stream carries at most :attr:`ServiceLimits.max_records_per_stream`
  records, and its response (one result per record) must stay under
  :attr:`ServiceLimits.max_response_bytes`, below the 4 MiB a default gRPC client
  accepts; over either, the stream is refused with ``RESOURCE_EXHAUSTED`` before
  anything is enrolled (:class:`RequestTooLarge`);
* error details are bounded (at most :attr:`ServiceLimits.max_violations` field
  violations, each description clipped), so an error always fits in the trailers a
  client accepts (8 KiB by default).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from linkage.errors import InvalidRequest, LinkageError


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds on requests and on error details (see the module docstring)."""

    max_field_chars: int = 200
    max_records_per_stream: int = 50_000
    max_response_bytes: int = 4_000_000  # a default client refuses 4 MiB (4,194,304)
    max_violations: int = 20
    max_description_chars: int = 200
    max_message_chars: int = 200  # the status message
    max_details_bytes: int = 3_000  # the serialized google.rpc.BadRequest


class RequestTooLarge(LinkageError, ValueError):
    """A request over one of the server's limits (RESOURCE_EXHAUSTED)."""


class TooManyStreams(LinkageError, RuntimeError):
    """More long-lived calls than the server lets open at once (RESOURCE_EXHAUSTED)."""


class UndecodableRequest(InvalidRequest):
    """A request message that is not a valid message of its type."""


#: C0 and C1 control characters (NUL, tab, line breaks, escape ...), DEL, and the Unicode
#: line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (the last one an ellipsis when cut)."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


class Undecodable:
    """What :func:`tolerant` returns for bytes that are not a valid request message."""

    __slots__ = ("size", "type_name")

    def __init__(self, type_name: str, size: int):
        self.type_name, self.size = type_name, size

    def error(self, position: int | None = None) -> UndecodableRequest:
        where = "the request message" if position is None else \
            f"stream message {position} (0 = the first)"
        return UndecodableRequest([("", f"{where} is not a valid {self.type_name} "
                                        f"({self.size} bytes: corrupt wire format or "
                                        f"invalid UTF-8); nothing was done")])


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Wrap a request deserializer: a decode error gives an :class:`Undecodable`."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request message")

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - any decode failure is the caller's bytes
            return Undecodable(type_name, len(data))

    return decode


class DecodedStream:
    """A request stream that raises :class:`UndecodableRequest` at an undecodable message."""

    def __init__(self, messages: Iterator[Any]):
        self._messages = messages
        self._position = 0

    def __iter__(self) -> DecodedStream:
        return self

    def __next__(self) -> Any:
        msg = next(self._messages)
        if isinstance(msg, Undecodable):
            raise msg.error(self._position)
        self._position += 1
        return msg


def string_problems(message: Any, limits: ServiceLimits, path: str = ""
                    ) -> list[tuple[str, str]]:
    """Field violations of every string field in ``message`` (recursively): too long, or
    with a control character. Field paths as in the request (``person.name.surname``,
    ``person.identifiers[2].value``)."""
    out: list[tuple[str, str]] = []
    limit = limits.max_field_chars
    for fd, value in message.ListFields():
        name = f"{path}.{fd.name}" if path else fd.name
        repeated = fd.is_repeated
        if fd.type == fd.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry:
            # A map<string, string> (PersonDetails.extra): its keys and values are strings.
            for k, v in value.items():
                for where, text in ((name, k), (f"{name}[{k!r}]", v)):
                    if isinstance(text, str) and len(text) > limit:
                        out.append((where, f"too long: at most {limit} characters"))
                    elif isinstance(text, str) and _CONTROL.search(text):
                        out.append((where, "must not contain control characters (NUL, tab, "
                                           "line breaks, ...)"))
        elif fd.type == fd.TYPE_MESSAGE:
            if repeated:
                for i, v in enumerate(value):
                    out += string_problems(v, limits, f"{name}[{i}]")
            else:
                out += string_problems(value, limits, name)
        elif fd.type == fd.TYPE_STRING:
            for i, v in (enumerate(value) if repeated else ((None, value),)):
                where = name if i is None else f"{name}[{i}]"
                if len(v) > limit:
                    out.append((where, f"too long: at most {limit} characters"))
                elif _CONTROL.search(v):
                    out.append((where, "must not contain control characters (NUL, tab, "
                                       "line breaks, ...)"))
    return out


def check_strings(message: Any, limits: ServiceLimits) -> None:
    """:class:`InvalidRequest` when a string field of ``message`` breaks the limits."""
    problems = string_problems(message, limits)
    if problems:
        raise InvalidRequest(problems)


def _varint_len(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def _field_len(n_bytes: int) -> int:
    """Bytes of a length-delimited field of ``n_bytes`` (field number < 16)."""
    return 1 + _varint_len(n_bytes) + n_bytes


PERSON_ID_CHARS = 11  # "P-7E4N3BWZC"


def enrol_result_bytes(index: int, record_key: str, error: tuple[str, str] | None = None
                       ) -> int:
    """An upper bound of the bytes one ``EnrolResult`` adds to ``EnrolBatchResponse``.

    ``error`` is the (field, reason) of a rejected record; an accepted one is counted
    with a person ID and a match probability.
    """
    body = (1 + _varint_len(index)) + _field_len(len(record_key.encode())) + 2
    if error is None:
        body += _field_len(PERSON_ID_CHARS) + 9
    else:
        body += _field_len(len(error[0].encode())) + _field_len(len(error[1].encode()))
    return 1 + _varint_len(body) + body


#: The six counters of ``EnrolBatchResponse`` at most (int32 varints).
ENROL_BATCH_COUNTERS_BYTES = 6 * 6


__all__ = ["DecodedStream", "RequestTooLarge", "ServiceLimits", "TooManyStreams", "Undecodable",
           "UndecodableRequest", "check_strings", "clip", "enrol_result_bytes",
           "string_problems", "tolerant"]
