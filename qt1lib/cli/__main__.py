"""``python -m qt1lib.cli``: the ``qt1`` command."""

import sys

from .main import main

sys.exit(main())
