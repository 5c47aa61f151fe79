"""The store's areas: one mixin each, assembled into ``Store``; no method is defined twice, so the
order of ``Store``'s bases (set by which area derives from which) decides nothing else."""

from __future__ import annotations

import inspect

from itcollect.store import Store, StoreCore


def test_no_two_store_mixins_define_the_same_method():
    mixins = [c for c in Store.__mro__ if c.__name__.endswith("Mixin")]
    assert len(mixins) >= 10
    owner: dict[str, str] = {}
    twice = []
    for cls in mixins:
        for name, value in vars(cls).items():
            if name.startswith("__") or not (inspect.isfunction(value) or isinstance(value, (property, staticmethod,
                                                                                            classmethod))):
                continue
            if name in owner:
                twice.append(f"{name}: {owner[name]} and {cls.__name__}")
            owner[name] = cls.__name__
    assert not twice, twice
    assert all(issubclass(cls, StoreCore) for cls in mixins)
