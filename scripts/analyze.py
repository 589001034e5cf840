#!/usr/bin/env python
"""Plots, tables and a verdict for a run or sweep: `python scripts/analyze.py --experiment <name>`."""
from vqba_nb.analysis import main

if __name__ == '__main__': main()
