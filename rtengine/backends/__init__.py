"""Live audio backends.  Each one runs the engine's native runner from a
native audio thread; Python only prepares, connects and reports."""
