import sys

from pushgw.cli import main

sys.exit(main())
