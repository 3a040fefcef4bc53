"""Roles served by a remote OpenAI-compatible engine (llama-server, vLLM, Ollama, LM Studio's
server, another Hivetray), supervised exactly like a local worker.

Why a link and not a second supervisor: :class:`~hivetray.pool.remote.link.RemoteLink`
implements the same :class:`~hivetray.pool.transport.WorkerLink` interface a worker process
does, so one :class:`~hivetray.pool.role.RoleSupervisor` keeps one state machine, restart
budget, breaker, health schedule and idle reaper for both kinds of role. Qt-free; everything
runs on the app's event loop with aiohttp's client.
"""

from hivetray.pool.remote.link import RemoteLink

__all__ = ["RemoteLink"]
