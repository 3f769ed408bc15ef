"""Who you are to Punchline: the account on a rendezvous server, this device's identity key, and the
sign-in kept between runs.

* `signing_in` — create an account, sign in (password or saved token), with sentences for every failure;
* `identity` — this device's Ed25519 identity key (made on first use, owner-only);
* `saved_sessions` — session tokens per (server, user) in an owner-only file (the CLI's, and the app's
  fallback when the system has no keyring);
* `remembered` — the desktop app's "Remember me": last server and name, the token in the keyring.
"""
