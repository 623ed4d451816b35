import torch

# One thread: the folder runs many tiny (often float64, depthwise) convolutions, which
# multi-threaded kernels slow down by orders of magnitude on a busy machine.
torch.set_num_threads(1)
