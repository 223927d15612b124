"""``python -m workers.streams``: one stream worker, until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from core.env import SettingsError
from core.logs import configure_logging
from core.settings import get_settings

log = logging.getLogger("workers.streams")


def main() -> int:
    configure_logging(logging.INFO)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"verity stream worker: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG, as the Celery workers
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        print("verity stream worker: live streams need Redis as the broker (BROKER_URL=redis://...)", file=sys.stderr)
        return 78
    from workers.resources import load_resources  # torch: after the settings are known to be usable
    from workers.streams.worker import StreamWorker

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker = StreamWorker(settings, load_resources(settings))
    log.info("stream worker %s ready.", worker.name)
    worker.run(stop)
    log.info("stream worker %s stopped", worker.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
