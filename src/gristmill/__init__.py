"""gristmill: turn a pile of files into a searchable knowledge base."""
