#!/usr/bin/env python
"""Tables, figures and a verdict: `python scripts/analyze.py --experiment <name>` for a run or sweep under experiments/,
`python scripts/analyze.py --results results/study` for committed run records (see `--help`)."""
from vqba_nb.report import main

if __name__ == '__main__': main()
