import sys

from bnnslstm._cli import main

sys.exit(main())
