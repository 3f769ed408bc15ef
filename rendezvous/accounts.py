"""Account rules and secrets: usernames, password strength, argon2id hashes, session tokens.

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 low-memory profile). Session tokens are 256-bit
random values; only their SHA-256 is stored, which is safe because they are not guessable.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rendezvous.wire.signalling import valid_username

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256  # hashing a megabyte-long "password" is a cheap denial of service
MIN_DISTINCT_CHARACTERS = 5

# The most common passwords of at least MIN_PASSWORD_LENGTH characters; NIST SP 800-63B asks for a
# blocklist rather than composition rules.
_COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "0123456789",
        "qwertyuiop",
        "password123",
        "password1234",
        "iloveyou123",
        "1q2w3e4r5t",
        "qwerty1234",
        "qwerty12345",
        "1qaz2wsx3edc",
        "abcdefghij",
        "passw0rd123",
        "letmein123",
        "welcome123",
        "football123",
        "administrator",
        "0987654321",
        "1111111111",
        "123456789a",
        "a123456789",
        "princess123",
        "sunshine123",
        "monkey1234",
        "dragon1234",
    }
)

_hasher = PasswordHasher()


def normalise_username(name: str) -> str:
    """Usernames are case-insensitive: store and compare them lowercased and trimmed."""
    return name.strip().lower()


def username_problem(name: str) -> str | None:
    """Why ``name`` (already normalised) cannot be a username, or None when it can."""
    if valid_username(name):
        return None
    return "Usernames are 3 to 32 characters: letters, digits, '_', '.' or '-', starting with a letter."


def password_problem(password: str, username: str) -> str | None:
    """Why ``password`` is too weak for ``username``, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Passwords need at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Passwords can be at most {MAX_PASSWORD_LENGTH} characters."
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        return f"Passwords need at least {MIN_DISTINCT_CHARACTERS} different characters."
    lowered = password.lower()
    if lowered in _COMMON_PASSWORDS:
        return "That password is one of the most common ones; choose another."
    if username and username in lowered:
        return "Passwords must not contain the username."
    return None


def hash_password(password: str) -> str:
    """An argon2id hash string (salt and parameters included). CPU and memory heavy: run in a thread."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``. CPU and memory heavy: run in a thread."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A fresh session token for the client to keep (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
