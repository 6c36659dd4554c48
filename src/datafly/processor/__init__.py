"""The processor role: reads accepted requests, runs the pure pipeline (``datafly.processing``),
fills the queues. ``loop`` is the loop; ``child`` runs it in a process of its own."""
