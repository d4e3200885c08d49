"""``python -m digits_predict`` runs the ``digits-predict`` command line."""

import sys

from digits_predict.cli import main

sys.exit(main())
