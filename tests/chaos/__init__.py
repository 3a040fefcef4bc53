"""Seeded chaos against a real ``hivetray daemon`` (tests here; ``bench/chaos.py`` runs longer)."""
