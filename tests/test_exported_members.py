"""The public API is exactly what gristmill exports, sorted and importable."""

import inspect

import gristmill


def test_all_is_sorted_and_every_name_exists() -> None:
    """`__all__` is sorted and each name in it is an attribute of the package."""
    assert gristmill.__all__ == sorted(gristmill.__all__)
    for name in gristmill.__all__:
        assert hasattr(gristmill, name), name


def test_public_objects_claim_a_public_home() -> None:
    """Every exported class or function lives in a non-underscore gristmill module."""
    for name in gristmill.__all__:
        obj = getattr(gristmill, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # type aliases such as SearchMode
        module = obj.__module__
        assert module.startswith("gristmill")
        assert not any(part.startswith("_") for part in module.split("."))
