import sys

from mlci_tui.cli.main import main

sys.exit(main())
