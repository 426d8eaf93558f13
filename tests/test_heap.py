"""The heap keeper: long-lived objects are frozen (full collections stay short), and
what closed sockets leave in reference cycles is still freed by a sweep."""

import gc
import time

import pytest

from webapp.realtime.heap import HeapKeeper

from .school import LiveSchool, build_school


class Hub:
    """Only what the keeper reads of the hub: open and closed socket counts, quietness."""

    def __init__(self):
        self.count = 0
        self.closed_total = 0
        self.quiet = 60.0

    def quiet_for(self) -> float:
        return self.quiet


class Cycle:
    """Stands for a socket's objects: they refer to each other, so only the cyclic
    collector frees them."""

    def __init__(self):
        self.me = self


@pytest.fixture
def keeper():
    keeper = HeapKeeper(Hub(), sweep_after_closes=10, check_every_s=3600)
    keeper.start()
    yield keeper
    keeper.stop()
    gc.unfreeze()


def test_start_up_objects_and_survivors_of_a_full_collection_are_frozen(keeper):
    assert gc.get_freeze_count() > 0
    kept = [Cycle() for _ in range(1000)]
    before = gc.get_freeze_count()
    gc.collect()
    assert gc.get_freeze_count() >= before + len(kept)
    assert len(gc.get_objects(generation=2)) < len(kept)  # nothing left to rescan


def test_a_sweep_frees_cycles_left_among_frozen_objects(keeper):
    cycles = [Cycle() for _ in range(1000)]
    gc.collect()  # survivors: frozen
    del cycles
    assert gc.collect() < 1000  # frozen: an ordinary collection does not see them
    assert keeper.sweep() >= 1000
    assert keeper.sweeps == 1


def test_a_sweep_waits_for_enough_closed_sockets(keeper):
    hub = keeper.hub
    hub.count = 20  # few open: at least sweep_after_closes (10) closed
    hub.closed_total += 9
    assert not keeper.sweep_due()
    hub.closed_total += 1
    assert keeper.sweep_due()
    hub.count = 400  # with 400 open, a quarter of them: 100 closed
    assert not keeper.sweep_due()
    hub.closed_total += 90
    assert keeper.sweep_due()
    keeper.sweep()
    assert not keeper.sweep_due()


def test_the_server_sweeps_after_sockets_close_and_still_delivers(
    app, database_url, live_server_factory
):
    school = build_school(app)
    server = live_server_factory(database_url, GC_SWEEP_AFTER_CLOSES="5")
    live = LiveSchool(school, server)
    try:
        tabs = [live.tab("s7b_1") for _ in range(6)]
        for tab in tabs:
            tab.close()
        deadline = time.monotonic() + 10
        while "heap sweep:" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "heap sweep:" in server.log()
        tab = live.tab("s7b_1")
        sent = live.api.send("after the sweep", targets={"users": [school.emails["s7b_1"]]})
        assert tab.notifications(1)[0]["id"] == sent["id"]
    finally:
        live.close()
