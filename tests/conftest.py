"""Suite-wide fixtures.

The tests run tiny tensors, where one intra-op thread is faster than several (and than fighting for a
shared machine's cores); the previous thread count is restored after each test.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
