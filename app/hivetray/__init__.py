"""Hivetray: keeps local llama.cpp models warm, healthy and cheap from the system tray."""

__version__ = "0.1.0"

ROLES: tuple[str, ...] = ("chat", "vision", "embed", "rerank")
