"""Developer-only tools (tiny GGUF models for tests, benchmarks and the packaging smoke tests).

Never imported by the app, never shipped: pyproject excludes this package from wheels and the
PyInstaller spec from frozen builds. It lives here, beside the package, because three consumers
outside the app need it (tests/, bench/, packaging/smoke_home.py on every OS) and all of them
already import ``hivetray``; its dependencies (gguf, numpy) come with the ``dev`` extra.
"""
