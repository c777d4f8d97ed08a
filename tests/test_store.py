"""The metric store: push semantics, the consistency check, the scrape body."""

from __future__ import annotations

from array import array

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pushgw.exposition.text_parser import parse_text
from pushgw.storage import consistency, family as family_module, store as store_module
from pushgw.storage.consistency import Inconsistency, ReservedFamily
from pushgw.storage.store import MetricStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def store() -> MetricStore:
    reserved = {
        "pushgateway_build_info": ReservedFamily("gauge", "build info", strict_help=False),
        "pushgateway_http_requests_total": ReservedFamily("counter", "requests", strict_help=True),
        "own_summary": ReservedFamily("summary", "own", strict_help=False),
    }
    return MetricStore(reserved=reserved, clock=Clock())


def push(store: MetricStore, text: str, replace: bool = True, **grouping: str) -> None:
    store.push(grouping or {"job": "j"}, parse_text(text.encode()), replace)


def samples(store: MetricStore) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the scrape body, push times left out."""
    result = {}
    for family in text_string_to_metric_families(store.render().decode()):
        for s in family.samples:
            if not s.name.startswith("push_"):
                result[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return result


def test_put_replaces_group_and_post_replaces_only_pushed_families(store):
    push(store, "a 1\nb 2\n", job="j")
    push(store, "b 3\n", replace=False, job="j")
    assert samples(store) == {
        ("a", (("instance", ""), ("job", "j"))): 1.0,
        ("b", (("instance", ""), ("job", "j"))): 3.0,
    }
    push(store, "c 4\n", job="j")
    assert samples(store) == {("c", (("instance", ""), ("job", "j"))): 4.0}


def test_grouping_labels_win_and_instance_is_added(store):
    push(store, 'x{job="other",k="v"} 1\ny{instance="body"} 2\n', job="j")
    assert samples(store) == {
        ("x", (("instance", ""), ("job", "j"), ("k", "v"))): 1.0,
        ("y", (("instance", "body"), ("job", "j"))): 2.0,
    }


def test_empty_put_empties_group_but_keeps_it(store):
    push(store, "a 1\n", job="j")
    push(store, "", job="j")
    assert samples(store) == {}
    assert len(store.groups) == 1
    assert store.series_count == 0


def test_type_conflict_across_groups_rejected_and_failure_recorded(store):
    push(store, "# TYPE m counter\nm 1\n", job="a")
    with pytest.raises(Inconsistency, match="type"):
        push(store, "# TYPE m gauge\nm 1\n", job="b")
    group = store.groups[(("job", "b"),)]
    assert group.push_time == 0 and group.failure_time > 0
    assert not group.last_push_successful
    assert "m" not in group.families


def test_type_change_allowed_when_the_group_is_the_only_holder(store):
    push(store, "# TYPE m counter\nm 1\n", job="a")
    push(store, "# TYPE m gauge\nm 1\n", job="a")
    assert store.groups[(("job", "a"),)].families["m"].type == "gauge"


def test_post_keeps_other_families_in_the_type_check(store):
    push(store, "# TYPE m counter\nm 1\n", job="a")
    push(store, "# TYPE m gauge\nm 1\n", job="a", replace=False)  # m is replaced: fine
    push(store, "# TYPE n summary\nn_sum 1\nn_count 1\n", job="a", replace=False)
    with pytest.raises(Inconsistency, match="collides"):
        push(store, "n_count 2\n", job="a", replace=False)
    # A PUT drops n, so n_count no longer collides.
    push(store, "n_count 2\n", job="a")


@pytest.mark.parametrize(
    "first, second",
    [
        ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", "h_count 1\n"),
        ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", "h_bucket 1\n"),
        ("h_sum 1\n", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"),
        ("# TYPE s summary\ns_sum 1\ns_count 1\n", "s_sum 1\n"),
        ("s_count 1\n", "# TYPE s summary\ns_sum 1\ns_count 1\n"),
    ],
)
def test_derived_name_collisions_rejected_in_both_orders(store, first, second):
    push(store, first, job="a")
    with pytest.raises(Inconsistency, match="collides"):
        push(store, second, job="b")


def test_summary_bucket_and_counter_total_do_not_collide(store):
    push(store, "# TYPE s summary\ns_sum 1\ns_count 1\n", job="a")
    push(store, "s_bucket 1\n", job="b")
    push(store, "# TYPE ct_total counter\nct_total 1\nct 2\n", job="c")


def test_duplicate_within_push_after_grouping_labels_rejected(store):
    with pytest.raises(Inconsistency, match="same name and label values"):
        push(store, 'x{job="a"} 1\nx{job="b"} 2\n', job="j")


def test_duplicate_across_groups_rejected(store):
    push(store, "x 1\n", job="j", instance="i")
    with pytest.raises(Inconsistency, match="same name and label values"):
        push(store, 'x{instance="i"} 2\n', job="j")
    # Replacing the same series in its own group is fine.
    push(store, "x 3\n", job="j", instance="i")


def test_hash_collisions_do_not_reject_distinct_series(store, monkeypatch):
    for module in (store_module, family_module):  # every series collides
        monkeypatch.setattr(module, "hash", lambda line: 42, raising=False)
    push(store, "x 1\n", job="a")
    push(store, "x 1\n", job="b")  # same hash, other labels: accepted
    assert len(samples(store)) == 2
    with pytest.raises(Inconsistency):  # the owner of the hash really holds it
        push(store, "x 1\n", job="b", instance="")


def test_reserved_names_need_their_type_and_strict_help(store):
    with pytest.raises(Inconsistency, match="should have GAUGE"):
        push(store, "pushgateway_build_info 1\n")
    push(store, "# TYPE pushgateway_build_info gauge\npushgateway_build_info 1\n")
    with pytest.raises(Inconsistency, match="help"):
        push(store, "# TYPE pushgateway_http_requests_total counter\npushgateway_http_requests_total 1\n")
    push(
        store,
        "# HELP pushgateway_http_requests_total requests\n"
        "# TYPE pushgateway_http_requests_total counter\npushgateway_http_requests_total 1\n",
    )
    with pytest.raises(Inconsistency, match="collides"):
        push(store, "own_summary_count 1\n", job="b")


def test_timestamps_rejected_and_body_time_families_ignored(store):
    with pytest.raises(Inconsistency, match=consistency.TIMESTAMPS_ERROR):
        push(store, "x 1 1000\n")
    push(store, "# TYPE push_time_seconds counter\npush_time_seconds 5\n")
    group = store.groups[(("job", "j"),)]
    assert group.families["push_time_seconds"].type == "gauge"
    assert group.push_time > 5


def test_delete_and_wipe_keep_index_exact(store):
    push(store, "# TYPE m counter\nm 1\n", job="a")
    push(store, "# TYPE m counter\nm 1\n", job="b")
    assert store.delete({"job": "a"})
    assert not store.delete({"job": "a"})
    with pytest.raises(Inconsistency):
        push(store, "# TYPE m gauge\nm 1\n", job="c")
    store.wipe()
    assert store.groups == {} and store.series_count == 0 and store.render() == b""
    push(store, "# TYPE m gauge\nm 1\n", job="c")


def test_scrape_body_merges_families_and_is_cached(store):
    push(store, "# HELP m first\n# TYPE m gauge\nm 1\n", job="a")
    push(store, "# HELP m second\n# TYPE m gauge\nm 2\n", job="b")
    body = store.render()
    assert body.count(b"# TYPE m gauge") == 1
    assert store.merged("m") is store.merged("m")  # cached until m changes
    push(store, "# TYPE m gauge\nm 3\n", job="b")
    assert store.render() != body
    assert samples(store)[("m", (("instance", ""), ("job", "b")))] == 3.0


def test_metrics_of_decodes_stored_family(store):
    push(store, '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 3\nh_sum 4\nh_count 3\n')
    stored = store.groups[(("job", "j"),)].families["h"]
    (metric,) = store.metrics_of(stored)
    assert metric.labels == {"instance": "", "job": "j"}
    assert metric.buckets == [(1.0, 2), (float("inf"), 3)]
    assert (metric.count, metric.sum) == (3, 4.0)


def test_unchecked_store_quarantines_inconsistent_pushes_but_refuses_timestamps():
    store = MetricStore(check_consistency=False, clock=Clock())
    push(store, "# TYPE m counter\nm 1\nok 1\n", job="a")
    push(store, "# TYPE m gauge\nm 2\nother 1\n", job="b")  # accepted, not exposed
    push(store, "dup 1\ndup 2\n", job="c", replace=False)
    b, c = store.groups[(("job", "b"),)], store.groups[(("job", "c"),)]
    assert set(b.quarantined) == {"m", "other"} and "type" in b.problem
    assert "dup" in c.quarantined and "same name" in c.problem
    assert set(samples(store)) == {
        ("m_total", (("instance", ""), ("job", "a"))),
        ("ok", (("instance", ""), ("job", "a"))),
    }
    push(store, "# TYPE m counter\nm 3\n", job="b")  # a consistent PUT lifts the quarantine
    assert not b.quarantined and b.problem is None
    assert samples(store)[("m_total", (("instance", ""), ("job", "b")))] == 3.0
    with pytest.raises(Inconsistency):
        push(store, "x 1 1000\n", job="c")
    assert "x" not in store.groups[(("job", "c"),)].families


def test_reserved_label_names_in_the_body_are_rejected(store):
    with pytest.raises(Inconsistency, match="invalid name: __x"):
        push(store, 'a{__x="1"} 1\n')


def assert_index_exact(store: MetricStore) -> None:
    """The index by name and series equals one rebuilt from the groups' lines.

    The time families are left out: groups {job="a"} and {job="a",instance=""}
    share their series, so which one the index names depends on history.
    """
    owners: dict[str, dict[int, tuple]] = {}
    count = 0
    for key, group in store.groups.items():
        for name, stored in group.families.items():
            hashes = family_module.series_hashes(name, stored.type, stored.lines)
            assert list(stored.hashes) == list(hashes), name
            if name not in family_module.TIME_NAMES:
                owners.setdefault(name, {}).update(dict.fromkeys(hashes, key))
                count += len(hashes)
    names = {n: e.owners for n, e in store._names.items() if n not in family_module.TIME_NAMES}
    assert names == owners
    assert store.series_count == count


def test_pushing_the_same_series_again_keeps_the_index_exact(store):
    body = "# TYPE m counter\nm{k=\"1\"} 1\nm{k=\"2\"} 2\n# TYPE g gauge\ng 1\n"
    push(store, body, job="a")
    first = store.groups[(("job", "a"),)].families["m"]
    push(store, body.replace(" 2\n", " 20\n"), job="a")  # same series, new values
    again = store.groups[(("job", "a"),)].families["m"]
    assert again.series_digest == first.series_digest and again.hashes is first.hashes
    assert samples(store)[("m_total", (("instance", ""), ("job", "a"), ("k", "2")))] == 20.0
    assert_index_exact(store)
    with pytest.raises(Inconsistency, match="same name and label values"):  # still owned by a
        push(store, '# TYPE m counter\nm{k="1"} 5\n', job="a", instance="")
    push(store, '# TYPE m counter\nm{k="3"} 3\n', replace=False, job="a")  # other series
    assert_index_exact(store)
    push(store, '# TYPE m counter\nm{k="1"} 5\n', job="a", instance="")  # k=1 is free again
    assert_index_exact(store)
    store.delete({"job": "a", "instance": ""})
    push(store, "# TYPE m gauge\nm{k=\"3\"} 3\n", job="a")  # same labels, other type
    assert store.groups[(("job", "a"),)].families["m"].type == "gauge"
    assert "g" not in store.groups[(("job", "a"),)].families
    assert_index_exact(store)
    store.delete({"job": "a"})
    assert_index_exact(store)


def restored(store: MetricStore) -> MetricStore:
    """A new store given what ``store`` holds, as a restart reads it from the database."""
    new = MetricStore(reserved=store.reserved, clock=Clock(), utf8_names=store.utf8_names)
    for group in store.groups.values():
        families = [
            (family_module.StoredFamily(f.name, f.type, f.help, f.lines, array("q"), f.pushed_at,
                                        added_inf=f.added_inf, proto=f.proto, native=f.native), False)
            for f in group.families.values() if f.name not in family_module.TIME_NAMES
        ]
        new.restore(group.labels, group.push_time, group.failure_time, group.ttl, families)
    return new


MIXED = (
    '# TYPE c counter\nc{k="1"} 1\nc{k="2"} 2\n'
    '# TYPE s summary\ns{k="1",quantile="0.5"} 1\ns_sum{k="1"} 2\ns_count{k="1"} 3\ns_sum{k="2"} 2\ns_count{k="2"} 3\n'
    '# TYPE h histogram\nh_bucket{k="1",le="1"} 1\nh_bucket{k="1",le="+Inf"} 2\nh_sum{k="1"} 2\nh_count{k="1"} 2\n'
)


def test_restored_series_are_scraped_at_once_and_indexed_before_any_change(store):
    push(store, MIXED, job="a")
    push(store, MIXED, job="b")
    new = restored(store)
    assert new.series_count == store.series_count == 10
    assert new.render() == store.render()
    assert not new.index_pending(max_series=1)  # one family at a time: more to do
    with pytest.raises(Inconsistency, match="same name and label values"):  # indexes the rest first
        push(new, '# TYPE h histogram\nh_bucket{k="1",le="+Inf"} 2\nh_sum{k="1"} 2\nh_count{k="1"} 2\n',
             job="b", instance="")
    assert new.index_pending()
    assert_index_exact(new)


def test_restored_groups_deleted_before_indexing_stay_out_of_the_index(store):
    push(store, MIXED, job="a")
    push(store, MIXED, job="b")
    new = restored(store)
    new.delete({"job": "a"})
    assert_index_exact(new)
    push(new, MIXED, job="a", instance="")  # a's series are free again


def test_restore_finds_the_first_series_of_quoted_names():
    store = MetricStore(clock=Clock(), utf8_names=True)
    body = (b'# TYPE "a.b" histogram\n{"a.b_bucket",z="1",le="+Inf"} 1\n{"a.b_sum",z="1"} 1\n'
            b'{"a.b_count",z="1"} 1\n{"a.b_bucket",le="+Inf"} 1\n{"a.b_sum"} 1\n{"a.b_count"} 1\n')
    store.push({"job": "j"}, parse_text(body, utf8_names=True), True)
    new = restored(store)
    held, again = (s.groups[(("job", "j"),)].families["a.b"] for s in (store, new))
    assert again.sort_key == held.sort_key == (2, ("", "j"))
    assert again.utf8 and new.series_count == 2
    assert new.index_pending()
    assert_index_exact(new)
