"""The agent IR engine: parse, verify and execute CAR action proposals (agent-ir-spec.md).

Pure Python, no I/O: tools run through a :class:`ToolRunner` and state lives behind a
:class:`StateStore`, both supplied by the caller (the server, a notebook, a test).
"""
