"""Store drivers shipped with fsstore, one module each."""
