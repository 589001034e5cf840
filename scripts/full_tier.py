#!/usr/bin/env python
"""The full tier on one GPU: `python scripts/full_tier.py [--sweep sweeps/full.yaml] [--budget-s 600] [--plan-only]`.
Measures one epoch, chooses how many runs share the device, records finished runs under results/full/."""
from vqba_nb.sweep import tier_main

if __name__ == '__main__': tier_main()
