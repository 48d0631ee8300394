import sys

from export.cli.main import main

sys.exit(main())
