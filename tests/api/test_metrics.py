"""``/metrics``: Prometheus text, one sample per role and figure, unknown figures left out."""

from __future__ import annotations

import re

from hivetray.api.metrics import label, render
from hivetray.pool.states import RoleState
from hivetray.pool.status import RoleStatus

SAMPLE = re.compile(r'^[a-z_]+\{role="[a-z]+"(,state="[a-z_]+")?\} -?[0-9.e+-]+$')


def test_every_line_is_help_type_or_a_sample() -> None:
    roles = (RoleStatus("chat", RoleState.BUSY, pid=10, in_flight=2, requests=5,
                        prompt_tokens=40, completion_tokens=100, load_s=0.25,
                        rss_bytes=123456, tokens_per_s=88.5, uptime_s=3.0),
             RoleStatus("embed", RoleState.STOPPED))
    text = render(roles, {"chat": 3})
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.match(line), line
    assert 'hivetray_role_state{role="chat",state="busy"} 1' in text
    assert 'hivetray_role_state{role="chat",state="ready"} 0' in text
    assert 'hivetray_role_crashes_total{role="chat"} 3' in text
    assert 'hivetray_role_crashes_total{role="embed"} 0' in text
    assert 'hivetray_role_requests_total{role="chat"} 5' in text
    assert 'hivetray_role_rss_bytes{role="chat"} 123456' in text
    assert 'hivetray_role_load_seconds{role="chat"} 0.25' in text
    assert 'hivetray_role_rss_bytes{role="embed"}' not in text  # unknown: left out
    assert text.count("# TYPE hivetray_role_requests_total counter") == 1


def test_label_values_are_escaped() -> None:
    assert label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
