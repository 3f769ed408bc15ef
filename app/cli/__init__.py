"""``punchline-cli``: the headless client, for scripts, tests and people without a desktop."""
