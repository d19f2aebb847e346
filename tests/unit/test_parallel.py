"""parallel.all_at_once: calls at once, results in order, no call left running."""

from __future__ import annotations

import threading
import time

import pytest

from cloudnorm import parallel


def test_calls_run_at_once_and_results_keep_their_order():
    barrier = threading.Barrier(3, timeout=5)  # would time out if the calls ran in turn

    def call(value):
        return lambda: (barrier.wait(), value)[1]

    assert parallel.all_at_once([call("a"), call("b"), call("c")]) == ["a", "b", "c"]


def test_an_error_is_raised_once_every_call_finished():
    finished = []

    def slow():
        time.sleep(0.2)
        finished.append("slow")
        return 1

    def broken():
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        parallel.all_at_once([broken, slow])
    assert finished == ["slow"]


def test_one_call_runs_in_the_callers_thread():
    assert parallel.all_at_once([threading.get_ident]) == [threading.get_ident()]
    assert parallel.all_at_once([]) == []
