import sys

from smithers_core.cli import main

sys.exit(main())
