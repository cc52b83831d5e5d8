"""The two schema histories: :mod:`.sqlite` (the file) and :mod:`.postgres` (the server)."""
