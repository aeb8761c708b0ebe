"""An example fsstore plugin: a memory store and a JSON-records cache driver."""
