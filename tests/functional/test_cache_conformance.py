"""Both shipped cache drivers run the shared cache behavioural suite."""

from fsstore.testing.cache_suite import CacheDriverConformanceTests


class TestSqliteDriver(CacheDriverConformanceTests):
    driver = "sqlite"


class TestXattrDriver(CacheDriverConformanceTests):
    driver = "xattr"
