"""https:// remote roles and the tray's lean start: the tray keeps OpenSSL out of its process
(~8 MiB) unless a role uses https:// at launch; a role switched to https:// later is told to
restart the app in one line, instead of failing deep inside asyncio."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from hivetray.app import uses_tls
from hivetray.config import default_config
from hivetray.errors import error_from_wire
from hivetray.pool.remote import link as link_module
from hivetray.pool.remote.link import RemoteLink
from tests.pool.fakes import FakeClock
from tests.remote.test_remote_link import Sink


def test_the_tray_keeps_tls_only_for_an_https_remote_role() -> None:
    config = default_config()
    assert not uses_tls(config)

    def with_chat(**settings: object) -> bool:
        return uses_tls(replace(config, roles={**config.roles,
                                               "chat": replace(config.role("chat"), **settings)}))

    assert with_chat(engine="remote", url="HTTPS://gpu-box:8443")
    assert not with_chat(engine="remote", url="http://gpu-box:8080")
    assert not with_chat(engine="local", url="https://gpu-box:8443")  # a leftover url


def test_a_process_started_lean_has_no_tls_and_a_normal_one_has() -> None:
    probe = ("import sys\nfrom hivetray.lean_imports import without_openssl\n"
             "if sys.argv[1] == 'lean':\n    with without_openssl():\n        import asyncio\n"
             "from hivetray.pool.remote.link import process_has_tls\nprint(process_has_tls())")
    answers = [subprocess.run([sys.executable, "-c", probe, how], capture_output=True,
                              text=True, timeout=60, check=True).stdout.strip()
               for how in ("lean", "normal")]
    assert answers == ["False", "True"]


@pytest.mark.asyncio
async def test_an_https_role_in_a_lean_process_says_to_restart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link_module, "process_has_tls", lambda: False)
    link = RemoteLink("chat", replace(default_config().role("chat"), engine="remote",
                                      url="https://user:secret@gpu-box:8443"), FakeClock())
    sink = Sink()
    link.start(sink)
    error = error_from_wire((await sink.next("load_error"))["error"])
    message = str(error)
    assert type(error).__name__ == "RemoteSetupError" and "\n" not in message
    assert "needs TLS" in message and "start it again" in message
    assert "secret" not in message  # the url is shown without its credentials
