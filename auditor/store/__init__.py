"""Storage: the batch writer (write side), queries (read side) and schema management."""
