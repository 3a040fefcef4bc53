"""``hivetray chat`` sampling flags: checked before anything starts (exit 2, naming the flag),
and sent as overrides only when given, so the role's defaults apply otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from hivetray import cli
from hivetray.paths import AppPaths


@pytest.mark.parametrize(("flags", "says"), [
    (["--top-p", "3"], "--top-p: 'top_p' must be a number above 0 and at most 1"),
    (["--seed", "-5"], "--seed: 'seed' must be a whole number"),
    (["--temperature", "9"], "--temperature: 'temperature' must be a number from 0 to 5"),
    (["--repeat-penalty", "0"], "--repeat-penalty: 'repeat_penalty' must be"),
])
def test_a_bad_flag_is_a_usage_error_naming_it(
        home: AppPaths, capsys: pytest.CaptureFixture[str], flags: list[str], says: str) -> None:
    assert cli.main(["chat", *flags, "hello"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_only_the_given_flags_are_sent(home: AppPaths, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    sent: list[dict[str, Any]] = []

    async def fake_with_instance(paths: AppPaths, cmd: str, payload: dict[str, Any]) -> Any:
        sent.append(payload)
        yield {"result": {"usage": {}, "finish_reason": "stop"}}

    monkeypatch.setattr(cli, "_with_instance_or_private", fake_with_instance)
    assert cli.main(["chat", "--temperature", "0", "--seed", "7", "--top-p", "0.5", "hi"]) == 0
    assert cli.main(["chat", "hi"]) == 0
    with_flags, without = (payload["params"] for payload in sent)
    assert with_flags == {"messages": [{"role": "user", "content": "hi"}],
                          "temperature": 0.0, "seed": 7, "top_p": 0.5}
    assert without == {"messages": [{"role": "user", "content": "hi"}]}


def test_help_lists_the_sampling_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["chat", "--help"])
    out = capsys.readouterr().out
    for flag in ("--temperature", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--seed"):
        assert flag in out
