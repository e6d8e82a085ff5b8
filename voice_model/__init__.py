"""The voice repository: manifests and checkpoints on disk, and the code that reads them."""
