"""The stored labels and order of pushed series (pushgw/storage/labels.py).

labelled_series works per tuple of label names for speed; these tests hold it
to the plain definition: grouping labels win, ``instance=""`` when there is
none, names sorted, series by label count then values, ties in push order.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pushgw.exposition.text_render import render_metrics
from pushgw.model import GAUGE, Metric, MetricFamily
from pushgw.storage.labels import labelled_series, series_order


def reference(metrics: list[Metric], grouping: dict[str, str]) -> list[tuple[dict[str, str], Metric]]:
    """The definition, one series at a time."""
    out = []
    for metric in metrics:
        labels = {**metric.labels, **grouping}
        if "instance" not in labels:
            labels["instance"] = ""
        out.append((dict(sorted(labels.items())), metric))
    out.sort(key=lambda pair: series_order(Metric(pair[0])))
    return out


def test_grouping_labels_win_and_instance_is_added():
    metrics = [Metric({"job": "mine", "b": "1"}, 1.0), Metric({"instance": "i", "a": "2"}, 2.0)]
    series = labelled_series(metrics, {"job": "j"})
    assert [series.labels(i) for i in range(2)] == [  # ordered by values: "1" < "2"
        {"b": "1", "instance": "", "job": "j"},
        {"a": "2", "instance": "i", "job": "j"},
    ]
    assert series.pairs == ('b="1",instance="",job="j"', 'a="2",instance="i",job="j"')
    assert series.label_names == {"a", "b", "instance", "job"}
    assert metrics[0].labels == {"job": "mine", "b": "1"}  # the pushed metric is left alone


def test_values_are_escaped_and_names_quoted():
    series = labelled_series([Metric({"a.b": 'x"\\\n%s'}, 1.0)], {"job": "j%d"})
    assert series.pairs == ('"a.b"="x\\"\\\\\\n%s",instance="",job="j%d"',)
    assert series.orders[0] == (3, ('x"\\\n%s', "", "j%d"))


def test_no_metrics():
    series = labelled_series([], {"job": "j"})
    assert series.metrics == () and series.label_names == set()


label_name = st.sampled_from(["a", "b", "instance", "job", "le", "z_9"])
label_value = st.text(st.sampled_from(list('ab"\\\n%sé')), max_size=3)
labels = st.dictionaries(label_name, label_value, max_size=4)


@settings(max_examples=300, deadline=None)
@given(own=st.lists(labels, max_size=12), grouping=labels.filter(lambda g: "job" in g))
def test_matches_the_definition(own, grouping):
    metrics = [Metric(dict(l), float(i)) for i, l in enumerate(own)]
    want = reference(metrics, grouping)
    series = labelled_series(metrics, grouping)
    assert [m.value for m in series.metrics] == [m.value for _, m in want]
    assert [series.labels(i) for i in range(len(want))] == [l for l, _ in want]
    assert [series_order(Metric(l)) for l, _ in want] == list(series.orders)
    # The rendered pairs are what the renderer writes for the stored labels.
    stored = MetricFamily("g", GAUGE, "", [Metric(l, m.value) for l, m in want])
    assert render_metrics(MetricFamily("g", GAUGE, "", list(series.metrics)), series.pairs) == render_metrics(stored)
