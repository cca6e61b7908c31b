"""Generated request ids: 128 random bits as 32 hex digits, never repeated, not even by a forked worker."""

from __future__ import annotations

import os
import re

from gateway.request_id import new_request_id


def test_ids_are_128_bit_hex_and_unique_across_blocks() -> None:
    ids = [new_request_id() for _ in range(1000)]  # several blocks of the OS's random bytes
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    new_request_id()  # the parent holds a block with ids still unused
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read)
        os.write(write, " ".join(new_request_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_request_id() for _ in range(5)}
    assert len(child) == 5 and not child & parent
