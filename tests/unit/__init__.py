"""Tests that need nothing but Python: sans-IO machines, codecs, parsers and pure logic (files in tmp_path
at most, never a socket or a subprocess)."""
