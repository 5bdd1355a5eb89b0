"""The `aid` command line."""
