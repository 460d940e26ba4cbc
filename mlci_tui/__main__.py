import sys

from mlci_tui.cli import main

sys.exit(main())
