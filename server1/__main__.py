"""`python -m server1`: the development server on HOST:PORT (default 127.0.0.1:5050).

Production runs gunicorn instead: gunicorn -c server1/gunicorn.conf.py "server1:create_app()".
"""

from __future__ import annotations

import logging
import sys

from server1 import create_app
from studio import config
from studio.errors import ConfigError


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host = config.env_str("HOST", "127.0.0.1")
        port = config.env_int("PORT", 5050, 1, 65535)
        app = create_app()
    except ConfigError as e:
        print(f"server1: cannot start: {e}", file=sys.stderr)
        return 2
    print(f"server1: listening on http://{host}:{port} (storage {app.extensions['server1'].storage.root})", flush=True)
    app.run(host=host, port=port, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
