"""The desktop app: pytest-qt in the app's own loop (qasync, offscreen), and the real app started as a
process (the demo, the self-test, the screenshot script)."""
