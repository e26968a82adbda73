"""The BI schema's read side: its catalog, the sample queries, the generated documentation."""
