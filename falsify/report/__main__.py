"""`python -m falsify.report.cli`: the whole pipeline and the scorecard."""

import sys

from falsify.report.cli import main

sys.exit(main())
