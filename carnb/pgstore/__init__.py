"""carnb's PostgreSQL store: one database shared by every carnb server of a team.

Chosen with the store setting (``--store``, ``CarMagics.store``, ``CARNB_STORE``;
:mod:`carnb.pgstore.setting`). Layout:

* :mod:`~carnb.pgstore.setting` (pure): parse and show the store setting (never the password).
* :mod:`~carnb.pgstore.database`: the connection pool, typed errors while PostgreSQL is away.
* :mod:`~carnb.pgstore.schema`: versioned schemas per component (``runs``, ``agents``,
  ``events``; memgine graphs plug in the same way), migrated once under an advisory lock.
* :mod:`~carnb.pgstore.notify`: one LISTEN connection per server, reconnecting by itself.
* :mod:`~carnb.pgstore.runs`: the run store (the server's ``RunLog``) with live cross-server
  records. :mod:`~carnb.pgstore.agents`: agent tokens as salted hashes.
  :mod:`~carnb.pgstore.events`: host events shared between servers.

psycopg is imported only in this package (an import-linter contract), and only when a
PostgreSQL store is opened: importing ``carnb.pgstore`` itself stays cheap.
"""

from carnb.pgstore.setting import StoreSetting, parse_store

__all__ = ["StoreSetting", "parse_store"]
