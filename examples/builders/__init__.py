"""One module per example package; each has build(package_dir) -> held-out metrics."""
