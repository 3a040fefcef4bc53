"""Qt widgets: tray icon, status window, settings, quick chat. Thin by design: they render pool
snapshots and events and turn clicks into intents; no worker logic lives here."""
