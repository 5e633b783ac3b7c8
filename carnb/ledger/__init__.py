"""The durable approval ledger's SQLite store (the PostgreSQL one is
:mod:`carnb.pgstore.ledger`): rows of JSON by id; what an approval means lives in
:mod:`carnb.app.approvals`."""
