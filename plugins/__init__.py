"""rtengine's own plugins.  rtengine finds them (and third-party ones) through
the ``rtengine.plugins`` entry-point group declared in pyproject.toml."""
