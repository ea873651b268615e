"""trainer.files.exclusive_lock: one holder at a time, threads of one process included."""

from __future__ import annotations

import threading
import time

from trainer.files import exclusive_lock


def test_the_lock_excludes_other_threads_of_the_same_process(tmp_path):
    lock, inside, overlaps = tmp_path / "sub" / ".key.lock", [], []

    def hold():
        with exclusive_lock(lock):
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [] and lock.is_file()
