"""Engine tests run tiny tensors: one intra-op thread is faster than several (and than fighting for a
shared machine's cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
