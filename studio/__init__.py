"""Code shared by both servers: storage layout, storage backends, job protocol, settings."""
