"""Entry points that point at things that are not fsstore drivers."""


class NotAStore:
    """Registered as a store and as a cache driver; is neither."""
