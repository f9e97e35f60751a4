"""Models shipped with rtengine (ONNX files and their model cards)."""
