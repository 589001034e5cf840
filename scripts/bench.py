#!/usr/bin/env python
"""Training throughput against a reference-style pipeline, same run: `python scripts/bench.py [--device cuda] [--json PATH]` (see --help)."""
from vqba_nb.bench import main

if __name__ == '__main__': main()
