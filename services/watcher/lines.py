"""Split a watch stream's byte chunks into JSON lines, whatever their size.

A watch answer is one JSON document per line, and one line can be a ConfigMap or Secret of
several megabytes spread over hundreds of network chunks. Client libraries that read lines
through a fixed buffer (or rebuild a growing ``bytes`` on every chunk, quadratic in the line
length) fail or crawl on those, so the watcher keeps the pieces of the unfinished line in a
list and joins them once, when the newline arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield each non-blank line of the concatenated ``chunks``, without its newline.

    A last line without a trailing newline is yielded too (a server closing the stream
    mid-line gives an incomplete document; the JSON decoder reports it, not this function).
    """
    pending: list[bytes] = []
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if start < len(chunk):
                    pending.append(chunk[start:])
                break
            piece = chunk[start:end]
            if pending:
                pending.append(piece)
                line = b"".join(pending)
                pending.clear()
            else:
                line = piece
            if line.strip():
                yield line
            start = end + 1
    if pending:
        line = b"".join(pending)
        if line.strip():
            yield line
