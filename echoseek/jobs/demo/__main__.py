"""``python -m echoseek.jobs.demo``: the demo job's command line."""

import sys

from echoseek.jobs.demo import main

sys.exit(main())
