"""TFRecord files without TensorFlow: the record framing with its CRC checks, and
``tf.train.Example`` parsing.

A TFRecord file is a sequence of records, each::

    uint64 length              little-endian
    uint32 masked_crc32c(length)
    byte   data[length]
    uint32 masked_crc32c(data)

with ``masked = ((crc >> 15) | (crc << 17)) + 0xA282EAD8`` (CRC-32C, Castagnoli). A record whose
data CRC fails is reported and skipped: its length was trusted, so the next record starts where
it should. A length whose CRC fails, a length past the end of the file, or a cut-off header
stops the file there (nothing after it can be found), reported with the record index and byte
offset. A length is never used to allocate before it is checked against the bytes the file has
left, so a hostile length (2^63) costs nothing.

Files TensorFlow wrote with ``compression_type="GZIP"`` or ``"ZLIB"`` are recognized by their
first bytes (when they do not start with a valid record header) and inflated as they are read;
their offsets count bytes of the inflated stream, and since its size is unknown in advance a
record's data is read in chunks of at most 1 MiB, so a hostile length allocates no more than
the stream holds, and a record declaring over 256 MiB ends the file (DEFLATE inflates up to
1032x: a small file could otherwise hold gigabytes). A corrupt compressed stream ends the file
like a bad length.

Why not the ``tfrecord`` package: it checks no CRC, and grows its buffer to 1.5x any declared
length before reading. Here ``protobuf`` parses the Example (message classes built at run time
from a small descriptor of TensorFlow's ``example.proto``/``feature.proto``: no generated code)
and ``google-crc32c`` (Google's C library) computes the CRCs; both are the ``tfrecord`` extra.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import DataError

EXTRA_HINT = "pip install 'cnnlab[tfrecord]' (protobuf and google-crc32c)"
_HEADER = struct.Struct("<QI")  # length, masked CRC of the length
_FOOTER = struct.Struct("<I")  # masked CRC of the data
_MASK_DELTA = 0xA282EAD8
_CHUNK = 1 << 20  # reads of a compressed stream: at most this many bytes at a time
MAX_INFLATED_RECORD = 256 << 20  # a compressed file's record: DEFLATE inflates up to 1032x


@dataclass(frozen=True)
class Record:
    """One record of a TFRecord file: its bytes, or why it could not be read.

    Attributes:
        index: position of the record in its file (0-based).
        offset: byte offset of the record's header.
        data: the record's bytes; None when it is unreadable.
        problem: why ``data`` is None ("" when it is not).
        fatal: the file cannot be read past this record (a bad length or a truncated file).
    """

    index: int
    offset: int
    data: bytes | None
    problem: str = ""
    fatal: bool = False


@functools.cache
def _crc32c():
    try:
        import google_crc32c  # the tfrecord extra; imported on first read
    except ImportError:
        raise DataError(f"reading TFRecord files needs google-crc32c: {EXTRA_HINT}") from None
    return google_crc32c.value


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = _crc32c()(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    """The records of the TFRecord file at ``path``, in order, each checked against its CRCs.

    Bad records come back as a :class:`Record` with ``data=None`` and the reason; after a
    ``fatal`` one the iteration ends (see the module docstring).

    Raises:
        DataError: ``path`` is not a regular file (a FIFO would block).
        OSError: it cannot be opened.
    """
    if not os.path.isfile(path):  # checked before opening: a FIFO would block the open
        raise DataError(f"{path}: not a regular file; not read as TFRecords")
    with open(path, "rb") as raw:
        handle, size = _records_stream(raw)
        index, offset = 0, 0
        while size is None or offset < size:
            try:
                record = _next_record(handle, index, offset, size)
            except zlib.error as err:
                record = Record(index, offset, None, f"corrupt compressed stream ({err})", True)
            if record is None:  # a compressed stream ended where a record could start
                return
            yield record
            if record.fatal:
                return
            offset = handle.tell()  # also after a data CRC failure: its length was good
            index += 1


def _records_stream(raw) -> tuple:
    """``(stream, size)`` of an open TFRecord file: the file itself and its size, or for a
    GZIP/ZLIB-compressed file an inflating reader and None (its size is unknown)."""
    head = raw.read(_HEADER.size)
    raw.seek(0)
    plain = len(head) == _HEADER.size and masked_crc(head[:8]) == _HEADER.unpack(head)[1]
    if plain or not _compressed(head):
        return raw, os.fstat(raw.fileno()).st_size
    return _Inflating(raw), None


def _compressed(head: bytes) -> bool:
    """GZIP's magic, or a zlib header (CMF 0x78 and the header check of RFC 1950)."""
    gzip = head[:2] == b"\x1f\x8b"
    return gzip or (len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0)


class _Inflating:
    """``read``/``tell`` over a GZIP or ZLIB stream (several gzip members in a row too)."""

    def __init__(self, raw) -> None:
        self.raw, self.position, self.tail = raw, 0, b""
        self.inflater = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or a zlib header

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer at the end), inflated at most 1 MiB at a time."""
        parts, wanted = [], size
        while wanted > 0:
            chunk = self._inflate(min(wanted, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        data = b"".join(parts)
        self.position += len(data)
        return data

    def _inflate(self, size: int) -> bytes:
        """Up to ``size`` inflated bytes; b"" at the end of the input."""
        while True:
            if self.inflater.eof:  # a member ended: what follows it may be another
                self.tail = self.inflater.unused_data
                self.inflater = zlib.decompressobj(wbits=47)
            if not self.tail:
                self.tail = self.raw.read(_CHUNK)
                if not self.tail:
                    return b""
            data = self.inflater.decompress(self.tail, size)
            # at a member's end the rest of the input is in unused_data (taken above)
            self.tail = b"" if self.inflater.eof else self.inflater.unconsumed_tail
            if data:
                return data

    def tell(self) -> int:
        return self.position


def _next_record(handle, index: int, offset: int, size: int | None) -> Record | None:
    """The record at ``offset``; None at the clean end of a compressed stream (``size`` None)."""
    header = handle.read(_HEADER.size)
    if size is None and not header:
        return None
    if len(header) < _HEADER.size:
        return Record(index, offset, None, f"truncated header ({len(header)} of 12 bytes)", True)
    length, length_crc = _HEADER.unpack(header)
    if masked_crc(header[:8]) != length_crc:
        hint = " (not a TFRecord file?)" if index == 0 else ""
        return Record(index, offset, None, f"length CRC mismatch{hint}", True)
    if size is not None:
        left = size - offset - _HEADER.size - _FOOTER.size
        if length > left:  # checked before anything is allocated
            problem = f"declares {length:,} bytes, {max(left, 0):,} left (truncated)"
            return Record(index, offset, None, problem, True)
    elif length > MAX_INFLATED_RECORD:  # a small compressed file may inflate to gigabytes
        problem = f"declares {length:,} bytes, over the {MAX_INFLATED_RECORD:,} read from a "
        return Record(index, offset, None, problem + "compressed file's record", True)
    data = handle.read(length)  # a compressed stream reads at most what it holds
    footer = handle.read(_FOOTER.size)
    if len(data) < length or len(footer) < _FOOTER.size:
        problem = f"declares {length:,} bytes, {len(data):,} left (truncated)"
        return Record(index, offset, None, problem, True)
    if masked_crc(data) != _FOOTER.unpack(footer)[0]:
        return Record(index, offset, None, f"data CRC mismatch ({length:,} bytes)")
    return Record(index, offset, data)


def count_records(path: str | os.PathLike) -> int:
    """How many records ``path`` holds, from the headers alone (no data CRCs); a bad length
    ends the count there. A compressed file is inflated through to count it."""
    count, offset = 0, 0
    with open(path, "rb") as raw:
        handle, size = _records_stream(raw)
        if size is None:
            return sum(1 for record in iter_records(path) if not record.fatal)
        while offset + _HEADER.size <= size:
            header = handle.read(_HEADER.size)
            length, length_crc = _HEADER.unpack(header)
            offset += _HEADER.size + length + _FOOTER.size
            if masked_crc(header[:8]) != length_crc or offset > size:
                break
            handle.seek(offset)
            count += 1
    return count


# TensorFlow's tensorflow/core/example/{example,feature}.proto as a FileDescriptorProto in
# protobuf's text format; only what an Example holds.
_EXAMPLE_PROTO = """
name: "cnnlab_tf_example.proto" package: "cnnlab_tf" syntax: "proto3"
message_type { name: "BytesList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_BYTES } }
message_type { name: "FloatList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_FLOAT } }
message_type { name: "Int64List"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_INT64 } }
message_type { name: "Feature" oneof_decl { name: "kind" }
  field { name: "bytes_list" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".cnnlab_tf.BytesList" oneof_index: 0 }
  field { name: "float_list" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".cnnlab_tf.FloatList" oneof_index: 0 }
  field { name: "int64_list" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".cnnlab_tf.Int64List" oneof_index: 0 } }
message_type { name: "Features"
  field { name: "feature" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".cnnlab_tf.Features.FeatureEntry" }
  nested_type { name: "FeatureEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
            type_name: ".cnnlab_tf.Feature" } } }
message_type { name: "Example"
  field { name: "features" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".cnnlab_tf.Features" } }
"""  # map<string, Feature> is the nested FeatureEntry with map_entry set, as protoc writes it


@functools.cache
def example_class() -> type:
    """The ``tf.train.Example`` message class (protobuf), built once from a descriptor."""
    try:  # the tfrecord extra; imported on first read
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
    except ImportError:
        raise DataError(f"reading TFRecord files needs protobuf: {EXTRA_HINT}") from None
    proto = text_format.Parse(_EXAMPLE_PROTO, descriptor_pb2.FileDescriptorProto())
    pool = descriptor_pool.DescriptorPool()  # our own pool: no clash with TensorFlow's names
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("cnnlab_tf.Example"))


FeatureValue = tuple[str, list]  # ("bytes" | "float" | "int64", values)


def parse_example(data: bytes, wanted: tuple[str, ...]) -> tuple[dict[str, FeatureValue], list]:
    """The features named in ``wanted`` of a serialized ``tf.train.Example``, and the names of
    all its features (for an error message when one is missing).

    Raises:
        ValueError: ``data`` is not a serialized Example (protobuf's DecodeError).
    """
    example = example_class()()
    try:
        example.ParseFromString(data)
    except Exception as err:  # protobuf's DecodeError (its class differs between backends)
        raise ValueError(f"not a tf.train.Example ({err})") from None
    features = example.features.feature
    found = {}
    for name in wanted:
        if name in features:
            feature = features[name]
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            found[name] = ((kind or "empty").removesuffix("_list"), values)
    return found, sorted(features.keys())


def tfrecord_stamp(path: str | os.PathLike) -> str:
    """ "path, size, modification time" of a TFRecord file, for cache keys."""
    info = Path(path).stat()
    return f"{Path(path).resolve()}\0{info.st_size}\0{info.st_mtime_ns}"
