"""The desktop bundle's entry point (PyInstaller runs this file as the program)."""

import sys

from app.__main__ import main

sys.exit(main())
