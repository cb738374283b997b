"""Everything that moves frames: sources, ring buffers, the engine, controls, display, writer."""
