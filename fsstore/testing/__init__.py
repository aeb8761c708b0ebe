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

The races between two adds of one id run in threads on the one store, and
in two processes, each with a store :meth:`StoreConformanceTests.store_factory`
builds there. By default that is the store of the same configuration files
(:class:`StoreFromConfig`); override it for a store set up otherwise, with a
picklable factory, or return None for a store whose images live in its
process.
"""

from fsstore.testing.suite import StoreConformanceTests, StoreFactory, StoreFromConfig

__all__ = ["StoreConformanceTests", "StoreFactory", "StoreFromConfig"]
