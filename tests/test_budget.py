"""core.budget: the memory a size read from a file or a form may claim, the resident-image limit
and the memory-mapped check."""

from __future__ import annotations

import resource

import numpy as np
import pytest

from core import budget
from core.errors import UserError


def test_usable_memory_is_the_lower_of_ram_and_the_address_space_limit(monkeypatch):
    ram = budget.usable_bytes()
    assert ram > 0
    monkeypatch.setattr(budget.resource, "getrlimit",
                        lambda _: (2**30, resource.RLIM_INFINITY))
    assert budget.usable_bytes() == min(ram, 2**30)
    monkeypatch.setattr(budget.resource, "getrlimit",
                        lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert budget.usable_bytes() == ram


def test_resident_limit_reads_its_variable_or_takes_a_quarter(monkeypatch):
    monkeypatch.setenv("XRAY_RESIDENT_BYTES", "1e6")
    assert budget.resident_limit() == 1_000_000
    monkeypatch.setattr(budget, "usable_bytes", lambda: 4000)
    monkeypatch.setenv("XRAY_RESIDENT_BYTES", "lots")   # unreadable: the default
    assert budget.resident_limit() == 1000
    monkeypatch.delenv("XRAY_RESIDENT_BYTES")
    assert budget.resident_limit() == 1000


def test_mapped_sees_a_memory_map_through_views(tmp_path):
    path = tmp_path / "images.u8"
    path.write_bytes(bytes(64))
    memmap = np.memmap(path, dtype=np.uint8, mode="r", shape=(4, 16))
    assert budget.mapped(memmap)
    assert budget.mapped(np.asarray(memmap)[1:3, ::2])   # a plain ndarray whose base is mapped
    np.save(tmp_path / "cache.npy", np.ones((4, 1, 8, 8), np.uint8))
    loaded = np.load(tmp_path / "cache.npy", mmap_mode="r")   # as the decoded-data cache reads
    assert budget.mapped(loaded.view(np.ndarray)[1:3].reshape(2, 64))
    assert not budget.mapped(np.zeros((4, 16), np.uint8))
    assert not budget.mapped(np.array(memmap))   # a copy is in memory


def test_check_fits_refuses_more_than_its_share(monkeypatch):
    monkeypatch.setattr(budget, "usable_bytes", lambda: 8 * 2**30)
    budget.check_fits("the data set", 4 * 2**30)   # exactly half: allowed
    with pytest.raises(UserError, match=r"the data set would need 4.5 GiB .* allows 4.0 GiB"):
        budget.check_fits("the data set", 4.5 * 2**30)
    with pytest.raises(UserError):
        budget.check_fits("one file", 2 * 2**30, share=0.2)
