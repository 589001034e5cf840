"""scripts/train.py in float64, for the multi-process equivalence tests: `python tests/ddp_worker.py ARGS` or under torchrun.

In float32, the sharpest assignments of the tiny model (BA-VQ at beta/scale ~ 3e7, nearest-code ties) turn rounding into
visible differences within a few steps: one process at 1 and at 2 threads differs by ~2e-4, as much as 1 and 2 processes
do. In float64 the same rounding stays ~1e-12, so what remains between 1 and N processes is what the synchronisation
gets wrong. Everything else is the real command line: torchrun's environment, the process group, DDP, rank 0's writes."""
import sys
import torch
import vqba_nb.data as D

torch.set_default_dtype(torch.float64)   # parameters and every quantizer buffer
D.to_float = lambda x: x.double().div_(255).sub_(0.5)   # the images (the one place the loop fixes float32)
import vqba_nb.train as T

if __name__ == '__main__': T.main(sys.argv[1:])
