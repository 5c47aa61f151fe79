"""Streaming reader of a top-level JSON array, shared by ``import`` (ShareGPT files are arrays) and
``ingest`` (sentence lists saved with ``json.dump``).

Such files are often one line of hundreds of megabytes, so they are read in chunks and each
element is decoded as soon as it is complete: memory stays at about one chunk plus one element.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

CHUNK = 1 << 20

#: Why an array could not be read on (the rest of the file is one bad record: there is no way to
#: resynchronise inside a broken array).
TRUNCATED = "truncated_json_array"
NOT_JSON = "not_json"


def iter_json_array(read: Callable[[int], str], bad: Callable[[str], Any], *,
                    chunk: int = CHUNK) -> Iterator[tuple[int, Any]]:
    """(line where the element starts, element) for each element of the array that ``read(n)``
    (a text file's ``read``) returns in pieces; a problem ends the stream with one
    ``(line, bad(reason))`` (reason ``TRUNCATED`` or ``NOT_JSON``). The text must start with the
    opening bracket (leading whitespace is skipped)."""
    decoder = json.JSONDecoder()
    buf = read(chunk)
    eof = not buf
    pos = 0
    line = 1
    while True:  # skip to the opening bracket
        while pos < len(buf) and buf[pos].isspace():
            line += buf[pos] == "\n"
            pos += 1
        if pos < len(buf) or eof:
            break
        buf, pos = read(chunk), 0
        eof = not buf
    if pos >= len(buf) or buf[pos] != "[":
        yield line, bad(NOT_JSON)
        return
    pos += 1
    while True:
        while True:
            while pos < len(buf) and (buf[pos].isspace() or buf[pos] == ","):
                line += buf[pos] == "\n"
                pos += 1
            if pos < len(buf) or eof:
                break
            buf, pos = buf[pos:] + read(chunk), 0
            eof = pos >= len(buf)
        if pos >= len(buf):
            yield line, bad(TRUNCATED)
            return
        if buf[pos] == "]":
            return
        while True:
            try:
                obj, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError:
                more = "" if eof else read(chunk)
                if not more:
                    eof = True
                    yield line, bad(NOT_JSON)
                    return
                buf, pos = buf[pos:] + more, 0
        yield line, obj
        line += buf.count("\n", pos, end)
        pos = end
        if pos > chunk:
            buf, pos = buf[pos:], 0
        if pos >= len(buf) and not eof:
            more = read(chunk)
            eof = not more
            buf += more
