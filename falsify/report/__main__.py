"""`python -m falsify.report`: the whole pipeline and the scorecard (see falsify.report.cli)."""

import sys

from falsify.report.cli import main

sys.exit(main())
