"""Test and benchmark support, above the service: real API and worker processes, tiny voices
built with Coqui's own classes, and fault injection (private brokers, flaky proxies).

Nothing in ``common``, ``api``, ``worker`` or ``launcher`` imports it."""
