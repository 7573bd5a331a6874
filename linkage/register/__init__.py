"""The register: one DuckDB file holding records, persons, ID events and runs.

* :mod:`~linkage.register.database`: the schema and its migrations, the one writable
  connection, transactions (everything a run publishes commits at once);
* :mod:`~linkage.register.store`: **the one writer**, shared by the batch, enrolment
  and the tests' builders (record upsert and hash, sources, the ID allocator, publishing
  persons with their events, constraints, the enrolment journal);
* :mod:`~linkage.register.export`: published persons and records out to files.
"""
