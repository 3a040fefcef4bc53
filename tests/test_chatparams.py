"""Chat parameters are checked the same way on every way in: one typed line, never a TypeError."""

from __future__ import annotations

from typing import Any

import pytest

from hivetray.chatparams import check_chat_params
from hivetray.errors import InvalidRequest

HI = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("params", "says"), [
    (None, "'params'"),
    ({}, "non-empty 'messages'"),
    ({"messages": "hi"}, "non-empty 'messages'"),
    ({"messages": [5]}, "message 1 must be an object"),
    ({"messages": [{"role": 5, "content": "hi"}]}, "message 1: 'role'"),
    ({"messages": [{"role": "user", "content": 5}]}, "message 1: 'content'"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "'content'"),
    ({**HI, "max_tokens": "x"}, "'max_tokens'"),
    ({**HI, "max_tokens": 0}, "'max_tokens'"),
    ({**HI, "max_tokens": True}, "'max_tokens'"),
    ({**HI, "temperature": "hot"}, "'temperature'"),
    ({**HI, "temperature": -1}, "'temperature'"),
])
def test_malformed_chat_params_are_one_line_invalid_requests(params: Any, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as caught:
        check_chat_params(params)
    assert "\n" not in str(caught.value)


def test_good_params_pass_and_give_the_messages() -> None:
    parts = {"messages": [{"role": "system", "content": "be brief"},
                          {"role": "user", "content": [{"type": "text", "text": "hi"},
                                                       {"type": "image_url"}]}],
             "max_tokens": 8, "temperature": 0.0}
    assert check_chat_params(parts) == parts["messages"]


@pytest.mark.parametrize("params", [
    {**HI, "top_p": 2}, {**HI, "top_k": -1}, {**HI, "seed": "42"}, {**HI, "repeat_penalty": 0},
])
def test_sampling_parameters_are_checked_with_the_rest(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="must be"):
        check_chat_params(params)


@pytest.mark.parametrize("stop", ["", [], ["a", ""], ["a", "b", "c", "d", "e"], 5, [5]])
def test_a_bad_stop_is_refused(stop: Any) -> None:
    with pytest.raises(InvalidRequest, match="'stop' must be"):
        check_chat_params({**HI, "stop": stop})


def test_stop_as_a_string_or_a_short_list_passes() -> None:
    check_chat_params({**HI, "stop": "\n\n"})
    check_chat_params({**HI, "stop": ["a", "b", "c", "d"]})
