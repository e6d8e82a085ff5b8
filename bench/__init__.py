"""The benchmark: ``python -m bench`` (``make bench``) starts the real service against RabbitMQ
and Redis and prints markdown tables, each figure next to the in-process floor measured in the
same run (the same texts synthesized by a warm model in this process, no service around it); the
long-text section streams paragraphs with one and two worker processes, and sets the short-text
overhead beside that of an earlier revision's service (``--old-rev``), measured alongside.

``--smoke`` is the short version CI runs: tiny voices, a few requests, the same code paths. The
numbers are reported, never asserted; what is checked (exit status 1) is correctness under load:
no 5xx, no accepted job lost, repeats sending no task, twins sharing one task, long texts done.
"""
