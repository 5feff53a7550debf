"""Shared set-up of every test.

One intra-op thread per test process: the suite runs under pytest-xdist (-n 2) on 2 shared
cores, and two processes each spinning two OpenMP threads make small convolutions about 100x
slower (measured: a 6x16x12x11 3x3 conv takes 0.3 ms with 1 thread, 31 ms with 2 under load).
"""

import torch

torch.set_num_threads(1)
