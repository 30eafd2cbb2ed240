"""The one registry idiom: ordered, read-only, one error message naming the allowed values."""
from dataclasses import dataclass

import pytest

from stflib.registry import Registry


@dataclass(frozen=True)
class _Entry:
    formula: str
    weight: float = 1.0


def _registry():
    r = Registry("loss")
    r.register("mse", _Entry("(y - yhat)^2"))
    r.register("pcc", _Entry("1 - r"))
    return r


def test_order_and_mapping_reads():
    r = _registry()
    assert r.names() == ("mse", "pcc") and list(r) == ["mse", "pcc"] and len(r) == 2
    assert r["pcc"].formula == "1 - r" and "mse" in r and "huber" not in r
    assert dict(r.items())["mse"] is r.get("mse")


def test_unknown_name_names_exactly_the_registered_values():
    r = _registry()
    for read in (lambda: r["huber"], lambda: r.get("huber")):
        with pytest.raises(ValueError) as e:
            read()
        assert str(e.value) == "loss: unknown 'huber'; allowed: mse, pcc"


def test_decorator_registers_and_returns_the_class():
    r = Registry("model")

    @r.register("tiny")
    class Tiny:
        pass

    assert r["tiny"] is Tiny and Tiny.__name__ == "Tiny"


def test_two_owners_of_one_name_is_an_error_but_re_registering_the_same_entry_is_not():
    r = _registry()
    same = r["mse"]
    assert r.register("mse", same) is same
    with pytest.raises(ValueError, match="'mse' is already registered"):
        r.register("mse", _Entry("|y - yhat|"))
    with pytest.raises(ValueError, match="non-empty string"):
        r.register("", _Entry("x"))


def test_table_reads_fields_or_columns():
    r = _registry()
    t = r.table()
    assert list(t["name"]) == ["mse", "pcc"] and list(t["formula"]) == ["(y - yhat)^2", "1 - r"]
    t2 = r.table({"w2": lambda e: 2 * e.weight})
    assert list(t2.columns) == ["name", "w2"] and list(t2["w2"]) == [2.0, 2.0]
