"""The conformance suite every store driver must pass.

A driver author subclasses :class:`StoreConformanceTests` in a pytest module
and provides a ``store`` fixture that returns a configured, empty store::

    import pytest
    from fsstore.testing import StoreConformanceTests

    class TestMyStore(StoreConformanceTests):
        @pytest.fixture
        def store(self, tmp_path):
            return make_my_configured_store(tmp_path)

Optionally override :meth:`StoreConformanceTests.leftovers` to list what the
store holds besides published images (staging files, in-progress uploads), so
that the failure tests can prove nothing is left behind.
"""

from fsstore.testing.suite import StoreConformanceTests

__all__ = ["StoreConformanceTests"]
