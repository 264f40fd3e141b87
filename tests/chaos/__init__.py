"""`make chaos`: faults injected into the whole cluster under load, and what must hold after them."""
