#!/usr/bin/env python
"""Run a sweep: `python scripts/sweep.py --sweep sweeps/compare.yaml [--list] [--index I] [--parallel N] [--epochs E]`."""
from vqba_nb.sweep import sweep_main

if __name__ == '__main__': sweep_main()
