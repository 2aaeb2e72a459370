"""What the waiter remembers of ended jobs (pure parts; the waits are in test_waiter)."""

from __future__ import annotations

import ttapi_async as tt
from ttapi_async._memory import Expiring, outcome_of


def test_taken_outcomes_expire_in_order() -> None:
    """The outcome store drops expired entries from the front as new ones come (pure)."""
    store = Expiring(ttl=60.0)
    results = [tt.JobResult(job_id=f"j{i}", image_url="u") for i in range(3)]
    store.put("j0", results[0], now=0.0)
    store.put("j1", results[1], now=30.0)
    assert store.get("j0", now=59.0) is results[0]
    assert store.get("j0", now=60.0) is None  # expired, even before it is dropped
    store.put("j2", results[2], now=61.0)  # drops j0, keeps j1
    assert len(store) == 2
    assert store.pop("j1", now=62.0) is results[1]
    assert store.pop("j1", now=62.0) is None


def test_a_failed_outcome_is_redacted_and_a_success_becomes_a_result() -> None:
    failed = tt.parse_callback(b'{"status":"FAILED","message":"bad key sk-x","data":{"jobId":"j"}}')
    hidden = outcome_of(failed, 1.0, "poll", lambda text: text.replace("sk-x", "***"))
    assert isinstance(hidden, tt.JobSnapshot)
    assert hidden.message == "bad key ***"
    done = tt.parse_callback(b'{"status":"SUCCESS","data":{"jobId":"j","imageUrl":"u"}}')
    result = outcome_of(done, 2.5, "webhook", None)
    assert isinstance(result, tt.JobResult)
    assert (result.elapsed, result.source, result.image_url) == (2.5, "webhook", "u")
