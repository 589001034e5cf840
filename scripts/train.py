#!/usr/bin/env python
"""Train a VQ-VAE: `python scripts/train.py --config configs/base.yaml --epochs 10 --name test` (same as `vqba-train`)."""
from vqba_nb.train import main

if __name__ == '__main__': main()
