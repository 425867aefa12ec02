"""The benchmark as a script: the same as ``python -m bnnslstm bench`` (see bnnslstm/_bench.py)."""

import sys

from bnnslstm._bench import main

sys.exit(main())
