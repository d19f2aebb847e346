"""The data plane's reconciling loop: a slow first boot holds up neither the round nor
the servers that become ready after it, and a node is never removed mid bring-up."""

from __future__ import annotations

import threading

import pytest

from cloudnorm.testing.dataplane.watch import Watcher


class Fleet:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove(self, node_id: str) -> None:
        self.removed.append(node_id)


class Plane(Watcher):
    def __init__(self) -> None:
        super().__init__(interval=0.05, fleet=Fleet())
        self.removed = self.fleet.removed
        self.started: list[str] = []
        self.release = threading.Event()

    def sync_once(self) -> None:  # driven by the tests themselves
        pass

    def write_console(self, node_id, text):
        pass

    def bring_up(self, node_id: str) -> None:
        self.started.append(node_id)
        if node_id == "slow":
            assert self.release.wait(10)
        if node_id == "broken":
            raise RuntimeError("cannot start")
        self.known.add(node_id)


@pytest.fixture
def plane():
    plane = Plane()
    yield plane
    plane.release.set()
    plane.stop()


def wait_until(condition) -> None:
    done = threading.Event()
    for _ in range(200):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("never happened")


def test_a_round_returns_while_a_first_boot_goes_on(plane):
    plane.each(["slow"], plane.bring_up)
    assert plane.busy("slow")
    # the next round starts what became ready meanwhile, and not "slow" a second time
    plane.each(["slow", "quick"], plane.bring_up)
    wait_until(lambda: "quick" in plane.known)
    assert plane.started.count("slow") == 1 and plane.busy("slow")
    plane.release.set()
    wait_until(lambda: not plane.busy("slow"))
    assert plane.known == {"slow", "quick"}


def test_a_node_under_way_is_removed_by_a_later_round(plane):
    plane.each(["quick"], plane.bring_up)
    wait_until(lambda: "quick" in plane.known and not plane.busy("quick"))
    plane.each(["slow"], plane.bring_up)
    plane.known.add("slow")  # brought up before, being brought in line again
    forgotten: list[str] = []
    plane.retire([], forget=forgotten.append)
    assert plane.removed == ["quick"] and forgotten == ["quick"]
    plane.release.set()
    wait_until(lambda: not plane.busy("slow"))
    plane.retire([], forget=forgotten.append)
    assert plane.removed == ["quick", "slow"] and plane.known == set()


def test_a_failed_bring_up_is_recorded_and_tried_again_next_round(plane):
    plane.each(["broken"], plane.bring_up)
    wait_until(lambda: plane.errors)
    assert "broken: cannot start" in plane.errors[0]
    wait_until(lambda: not plane.busy("broken"))
    plane.each(["broken"], plane.bring_up)
    wait_until(lambda: plane.started.count("broken") == 2)
