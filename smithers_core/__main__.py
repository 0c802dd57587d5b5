import sys

from smithers_core.cli.main import main

sys.exit(main())
