"""``python -m hivetray.devtools.tinymodels OUTDIR``: write the standard set of tiny models."""

import sys

from hivetray.devtools.tinymodels import main

sys.exit(main())
