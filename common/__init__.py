"""Code the API and the worker share: settings, the job contract, storage, text normalization."""
