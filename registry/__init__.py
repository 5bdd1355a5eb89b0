"""The registry: database models, the blob store and the model package format."""
