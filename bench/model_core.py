"""The model core's benchmarks: `python bench/model_core.py [--json] [--threads N] [--quick]`.

The same as `music-transformer bench`; the code lives in `music_transformer/bench.py` so that the
installed command can run it.
"""

import sys

from music_transformer.bench import main

if __name__ == "__main__":
    sys.exit(main())
