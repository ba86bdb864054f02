"""The balancer (least outstanding, random ties, retries elsewhere) and the health state machine."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ocrflux.upstream.replicas import Replica, ReplicaSet, State

URLS = ["http://a:1", "http://b:2", "http://c:3"]


def replica(replicas: ReplicaSet, url: str) -> Replica:
    return next(r for r in replicas if r.base_url == url)


def test_least_outstanding_requests_wins() -> None:
    replicas = ReplicaSet(URLS)
    a, b, c = replicas.replicas
    a.in_flight, b.in_flight, c.in_flight = 3, 1, 2
    assert replicas.pick() is b
    replicas.started(b)
    replicas.started(b)  # b now has 3, c has 2
    assert replicas.pick() is c


def test_ties_are_broken_at_random_among_the_least_loaded_only() -> None:
    seen: list[Sequence[Replica]] = []

    def choose(ties: Sequence[Replica]) -> Replica:
        seen.append(list(ties))
        return ties[-1]

    replicas = ReplicaSet(URLS, choice=choose)
    a, b, c = replicas.replicas
    b.in_flight = 5
    assert replicas.pick() is c
    assert seen == [[a, c]]  # the busy one is never among the ties


def test_random_ties_spread_evenly() -> None:
    replicas = ReplicaSet(URLS)
    counts = Counter(replicas.pick().base_url for _ in range(3000))  # type: ignore[union-attr]
    assert set(counts) == set(URLS)
    assert min(counts.values()) > 800  # ~1000 each; a fixed order would give 3000/0/0


def test_a_retry_goes_to_a_replica_not_tried_yet() -> None:
    replicas = ReplicaSet(URLS)
    a, b, c = replicas.replicas
    a.in_flight = 0
    b.in_flight = c.in_flight = 4  # a is the least loaded, but it already failed
    assert replicas.pick(tried=[a]) in (b, c)
    assert replicas.pick(tried=[a, b]) is c
    # Everything tried: the least loaded healthy one again (rather than nothing).
    assert replicas.pick(tried=[a, b, c]) is a


def test_ejected_replicas_take_no_calls() -> None:
    replicas = ReplicaSet(URLS, eject_after=2)
    a, b, c = replicas.replicas
    for _ in range(2):
        replicas.started(a)
        replicas.failed(a, "ConnectError")
    assert a.state is State.EJECTED and not a.healthy
    assert all(replicas.pick() is not a for _ in range(200))
    b.state = c.state = State.EJECTED
    assert replicas.pick() is None


def test_failures_must_be_consecutive_to_eject() -> None:
    replicas = ReplicaSet(URLS[:2], eject_after=3)
    a, _ = replicas.replicas
    for outcome in ["fail", "fail", "ok", "fail", "fail"]:
        replicas.started(a)
        if outcome == "ok":
            replicas.succeeded(a)
        else:
            replicas.failed(a, "status_503")
    assert a.state is State.HEALTHY and a.failures == 2 and a.in_flight == 0
    replicas.started(a)
    replicas.failed(a, "status_503")
    assert a.state is State.EJECTED
    assert a.last_error == "status_503"


def test_the_last_healthy_replica_is_never_ejected_by_failed_calls() -> None:
    replicas = ReplicaSet(URLS[:2], eject_after=2)
    a, b = replicas.replicas
    for replica in (a, a, b, b, b, b, b):
        replicas.started(replica)
        replicas.failed(replica, "status_500")
    assert a.state is State.EJECTED
    assert b.state is State.HEALTHY and b.failures == 5  # still counted, still tried
    assert replicas.pick() is b
    # An active check that fails is different: the replica really is down.
    replicas.checked(b, ready=False, reachable=False, error="/health: ConnectError")
    assert b.state is State.EJECTED and replicas.pick() is None


def test_half_open_takes_one_trial_then_readmits_on_success() -> None:
    replicas = ReplicaSet(URLS[:2], eject_after=1)
    a, b = replicas.replicas
    replicas.started(a)
    replicas.failed(a, "ReadTimeout")
    assert a.state is State.EJECTED
    replicas.checked(a, ready=True, reachable=True, served_models=["m"])  # the probe passes
    assert a.state is State.HALF_OPEN and a.healthy
    b.in_flight = 10
    trial = replicas.pick()
    assert trial is a
    replicas.started(a)
    # While its trial runs, a half-open replica takes nothing else, however idle it is.
    assert all(replicas.pick() is b for _ in range(50))
    replicas.succeeded(a)
    assert a.state is State.HEALTHY and a.last_error is None
    assert replicas.pick() is a


def test_a_failed_trial_ejects_again_at_once() -> None:
    replicas = ReplicaSet(URLS[:1], eject_after=5)
    (a,) = replicas.replicas
    a.state = State.EJECTED
    replicas.checked(a, ready=True, reachable=True)
    replicas.started(a)
    replicas.failed(a, "ConnectError")  # one failure suffices in half-open
    assert a.state is State.EJECTED
    assert replicas.pick() is None


def test_a_failed_active_check_ejects_and_a_good_one_starts_readmission() -> None:
    replicas = ReplicaSet(URLS[:1])
    (a,) = replicas.replicas
    replicas.checked(a, ready=False, reachable=False, error="/health: ConnectError")
    assert a.state is State.EJECTED and a.reachable is False
    assert a.last_error == "/health: ConnectError" and a.checked_at is not None
    replicas.checked(a, ready=True, reachable=True, served_models=["m"])
    assert a.state is State.HALF_OPEN and a.served_models == ["m"]


def test_a_cancelled_call_neither_counts_nor_strands_a_trial() -> None:
    replicas = ReplicaSet(URLS[:1])
    (a,) = replicas.replicas
    a.state = State.HALF_OPEN
    replicas.started(a)
    assert replicas.pick() is None  # the trial is running
    replicas.finished_neutral(a)
    assert a.state is State.HALF_OPEN and a.in_flight == 0
    assert replicas.pick() is a  # another call may be the trial now
