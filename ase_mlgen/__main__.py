import sys

from ase_mlgen.cli.main import main

sys.exit(main())
