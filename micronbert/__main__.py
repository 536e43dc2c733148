import sys

from micronbert.cli import main

sys.exit(main())
