"""Developer-only helpers (test fixtures, benchmarks); never imported by the app at runtime."""
