import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test: these small models run many tiny kernels, which a second
    thread only slows down on a loaded two-core machine; the count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
